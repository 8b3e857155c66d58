#!/bin/bash
# SPDX-License-Identifier: MIT
# `make bench-gunicorn`: the longest stall of a gunicorn app under load while it is
# upgraded (issue 15: gunicorn's arbiter says READY=1 before its workers booted), with
# gunicorn's own upgrade (USR2) beside batond's, with and without `overlap`.
# Usage: bench/gunicorn.sh BUILD_DIR [REPORT]   (default BUILD_DIR/bench/gunicorn.md)
#
# The app: examples/guides/wsgi_app.py under gunicorn, 2 sync workers, without
# --preload (each worker imports the app after the fork), GUIDE_IMPORT_DELAY seconds
# of import (BENCH_GUNICORN_IMPORT_S, 0.2). The load: bench/loadgen, 32 connections, a
# new connection per request. Each scenario: BENCH_GUNICORN_UPGRADES (10) upgrades,
# BENCH_GUNICORN_SPACING_MS (1500) apart:
#   baseline        no upgrade
#   gunicorn USR2   kill -USR2 the arbiter (it execs a new arbiter on the same
#                   sockets), wait until the new arbiter has its 2 workers, then
#                   SIGTERM the old arbiter (graceful stop): gunicorn's documented way
#   batond          batonctl upgrade, mode inherit, overlap = 0
#   batond overlap  the same with overlap = BENCH_GUNICORN_OVERLAP_S (1)
set -euo pipefail

build=$(cd "${1:?usage: bench/gunicorn.sh BUILD_DIR [REPORT]}" && pwd)
report=${2:-$build/bench/gunicorn.md}
root=$(cd "$(dirname "$0")/.." && pwd)
UPGRADES=${BENCH_GUNICORN_UPGRADES:-10}
SPACING_MS=${BENCH_GUNICORN_SPACING_MS:-1500}
IMPORT_S=${BENCH_GUNICORN_IMPORT_S:-0.2}
OVERLAP_S=${BENCH_GUNICORN_OVERLAP_S:-1}
CONNECTIONS=32
gunicorn=$(command -v gunicorn || true)
if [ -z "$gunicorn" ]; then
	echo "bench/gunicorn.sh: skipped: gunicorn is not installed (packaging/deps.sh installs it)"
	exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-bench-gunicorn.XXXXXX")
started=()
cleanup() {
	# An arbiter started by USR2 is the old one's child: by its pid file too.
	for pid in "${started[@]}" $(cat "$tmp"/gunicorn.pid* 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
duration_ms=$((500 + UPGRADES * SPACING_MS + 1500))
SPACING_S=$(awk -v ms="$SPACING_MS" 'BEGIN { print ms / 1000 }')
export GUIDE_IMPORT_DELAY=$IMPORT_S

wait_for() { # tries command...: until it succeeds, 10 s at most
	local tries=$1
	shift
	while ! "$@" >/dev/null 2>&1; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		sleep 0.02
	done
}

answers() { "$build/bench/loadgen" --port "$port" --connections 1 --duration-ms 50 --quiet; }

load() { # name: loadgen in the background, its report in $tmp/NAME.out
	"$build/bench/loadgen" --port "$port" --connections $CONNECTIONS \
		--duration-ms $duration_ms >"$tmp/$1.out" 2>&1 &
	lg=$!
}

gunicorn_start() {
	"$gunicorn" --workers 2 --bind "127.0.0.1:$port" --pid "$tmp/gunicorn.pid" \
		--chdir "$root/examples/guides" wsgi_app:app 2>"$tmp/gunicorn.log" &
	started+=("$!")
	wait_for 500 answers
}

# The new arbiter, once it has its 2 workers: while the old one runs, it writes its
# pid to PIDFILE.2 (and takes PIDFILE once the old one is gone).
new_arbiter() {
	local pid
	pid=$(cat "$tmp/gunicorn.pid.2" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ "$(pgrep -c -P "$pid")" -ge 2 ] || return 1
	echo "$pid"
}

promoted() { [ "$(cat "$tmp/gunicorn.pid" 2>/dev/null)" = "$1" ]; }

scenario_gunicorn() { # name upgrades
	gunicorn_start
	load "$1"
	sleep 0.5
	for _ in $(seq "$2"); do
		old=$(cat "$tmp/gunicorn.pid")
		kill -USR2 "$old"
		wait_for 500 new_arbiter "$old"
		new=$(new_arbiter "$old")
		started+=("$new")
		kill -TERM "$old"
		wait_for 500 promoted "$new"
		sleep "$SPACING_S"
	done
	wait "$lg" || true
	kill -TERM "$(cat "$tmp/gunicorn.pid")"
	wait_for 500 sh -c "! kill -0 $(cat "$tmp/gunicorn.pid")" || true
}

scenario_batond() { # name overlap_s
	cat >"$tmp/batond.conf" <<EOF
control { socket = "$tmp/batond.sock" }
listener http { address = "tcp://127.0.0.1:$port" }
app web {
  exec = { "$gunicorn", "--workers", "2", "--chdir", "$root/examples/guides", "wsgi_app:app" }
  listeners = { "http" }
  overlap = $2
  drain-timeout = 30
}
EOF
	"$build/supervisor/batond" -c "$tmp/batond.conf" 2>"$tmp/$1.batond.log" &
	local batond=$!
	started+=("$batond")
	wait_for 500 answers
	load "$1"
	sleep 0.5
	for _ in $(seq "$UPGRADES"); do
		"$build/supervisor/batonctl" -s "$tmp/batond.sock" upgrade web >>"$tmp/$1.upgrades" 2>&1
		sleep "$SPACING_S"
	done
	wait "$lg" || true
	"$build/supervisor/batonctl" -s "$tmp/batond.sock" stop >/dev/null 2>&1 || kill -TERM "$batond"
	wait "$batond" || true
}

field() { # name key: loadgen's key=value
	sed -n 's/.*\<'"$2"'=\([^ ]*\).*/\1/p' "$tmp/$1.out" | tail -1
}

row() { # name label upgrades
	echo "| $2 | $3 | $(field "$1" ok) | $(field "$1" failed) | $(field "$1" p99_us | awk '{printf "%.2f", $1 / 1000}') | $(field "$1" stall_ms) |"
}

echo "bench/gunicorn.sh: baseline, gunicorn USR2, batond, batond with overlap = $OVERLAP_S ($UPGRADES upgrades each)"
scenario_gunicorn baseline 0
scenario_gunicorn usr2 "$UPGRADES"
scenario_batond batond 0
scenario_batond overlap "$OVERLAP_S"

mkdir -p "$(dirname "$report")"
{
	echo "gunicorn $("$gunicorn" --version 2>&1 | tr -dc '0-9.'), 2 sync workers, no --preload, ${IMPORT_S} s import;"
	echo "loadgen $CONNECTIONS connections; $UPGRADES upgrades ${SPACING_MS} ms apart; $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "| scenario | upgrades | ok | failed | p99 ms | longest stall ms |"
	echo "|---|---|---|---|---|---|"
	row baseline "baseline (no upgrade)" 0
	row usr2 "gunicorn's own (USR2, then TERM to the old arbiter)" "$UPGRADES"
	row batond "batond, overlap = 0" "$UPGRADES"
	row overlap "batond, overlap = $OVERLAP_S" "$UPGRADES"
} >"$report"
cat "$report"

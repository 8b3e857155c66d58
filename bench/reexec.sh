#!/bin/bash
# SPDX-License-Identifier: MIT
# What a batond re-exec costs (issue 13), for `make bench` (bench/run.sh calls it and
# appends its table to the report). Usage: bench/reexec.sh BUILD_DIR OUT_FILE
#
# batond runs 2 apps of 4 workers each (dispatch: examples/hello; inherit:
# examples/sdhttp) and a third app whose only worker crashed until its restart waits
# 12.8 s: meanwhile batond holds HELD_CONNECTIONS accepted connections for it (the ring
# parked connections live in), which every re-exec carries. Then REEXECS times: a
# closed-loop load of 8 connections runs 300 ms on the dispatch app, `batonctl reexec`
# at 150 ms. Reported: batonctl's wall time (request to the new image's answer),
# batond's own figure (request to restored), and the load's longest request and
# longest gap without a completed request, against the same runs without a re-exec.
# Env: BENCH_REEXECS (10), BENCH_HELD (1000).
set -euo pipefail

build=$(cd "$1" && pwd)
out=$2
REEXECS=${BENCH_REEXECS:-10}
HELD=${BENCH_HELD:-1000}
bin=$build/bench
batond=$build/supervisor/batond
batonctl=$build/supervisor/batonctl
tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-bench-reexec.XXXXXX")
batond_pid=
holder_pid=

say() { printf 'bench-reexec: %s\n' "$*" >&2; }
die() {
	say "FAIL: $*"
	[ -s "$tmp/batond.log" ] && tail -20 "$tmp/batond.log" >&2
	exit 1
}
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	set +e # every step, whatever the one before returned
	[ -n "$holder_pid" ] && kill "$holder_pid" 2>/dev/null && wait "$holder_pid" 2>/dev/null
	if [ -n "$batond_pid" ] && kill -0 "$batond_pid" 2>/dev/null; then
		timeout 20 "$batonctl" -s "$tmp/ctl.sock" stop >/dev/null 2>&1 || kill -KILL "$batond_pid"
		wait "$batond_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
status() { "$batonctl" -s "$tmp/ctl.sock" status --json; }
# APP FIELD: an integer of app APP in the status: "held" is listener LISTENER's
# (listeners are batond's, not an app's); "pid" its ready worker's.
app_field() {
	status | python3 -c '
import json, sys
st = json.load(sys.stdin)
app = next(a for a in st["apps"] if a["name"] == sys.argv[1])
if sys.argv[2] == "held":
    print(next(l.get("held", 0) for l in st["listeners"] if l["name"] == "c"))
elif sys.argv[2] == "pid":
    print(next((w["pid"] for g in app["generations"] if g["id"] == app["serving"]
                for w in g["workers"] if w["state"] == "ready"), 0))
else:
    print(app[sys.argv[2]])' "$1" "$2"
}
wait_for() { # SECONDS CMD...
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.02
	done
}

pa=$(free_port) pb=$(free_port) pc=$(free_port)
cat >"$tmp/batond.conf" <<EOF
control { socket = "$tmp/ctl.sock" }
listener a { address = "tcp://127.0.0.1:$pa" }
listener b { address = "tcp://127.0.0.1:$pb" }
listener c { address = "tcp://127.0.0.1:$pc" }
app dispatch {
  exec = { "$build/examples/hello" }
  listeners = { "a" }
  mode = dispatch
  workers = 4
}
app inherit {
  exec = { "$build/examples/sdhttp" }
  listeners = { "b" }
  workers = 4
}
app held {
  exec = { "$build/tests/apps/parksrv" }
  listeners = { "c" }
  mode = dispatch
  hold-max = $((HELD + 100))
  hold-timeout = 120
}
EOF
"$batond" -c "$tmp/batond.conf" >"$tmp/batond.log" 2>&1 </dev/null &
batond_pid=$!
ready() { [ "$(status 2>/dev/null | grep -o '"state": *"ready"' | wc -l)" -ge 9 ]; }
wait_for 20 ready || die "batond's 9 workers not ready"

# One run of the load: 300 ms, and with "reexec" a re-exec at 150 ms.
run() { # N KIND
	local json=$tmp/load-$2-$1.json lg
	"$bin/loadgen" --port "$pa" --connections 8 --duration-ms 300 --json "$json" --quiet >/dev/null &
	lg=$!
	sleep 0.15
	if [ "$2" = reexec ]; then
		local t0 t1
		t0=$(date +%s%N)
		"$batonctl" -s "$tmp/ctl.sock" reexec >"$tmp/reexec-$1.out" 2>&1 ||
			die "reexec $1: $(cat "$tmp/reexec-$1.out")"
		t1=$(date +%s%N)
		echo "$(((t1 - t0) / 1000))" \
			"$(sed -n 's/.* in \([0-9]*\) ms; it paused \([0-9.]*\) ms.*/\1 \2/p' "$tmp/reexec-$1.out")" \
			>>"$tmp/reexec.times"
	fi
	wait "$lg" || die "load $2 $1 failed: $(cat "$json")"
}
for i in $(seq "$REEXECS"); do run "$i" none; done

# The held app: its worker crashes until the next restart waits 12.8 s.
pid=$(app_field held pid)
for crash in 1 2 3 4 5 6 7 8; do
	kill -KILL "$pid"
	[ $crash = 8 ] && break
	back() { p=$(app_field held pid) && [ "$p" != 0 ] && [ "$p" != "$pid" ]; }
	wait_for 10 back || die "the held app's worker did not come back"
	pid=$p
done
grep -q "restarting in 12800 ms" <(wait_for 5 grep -q "restarting in 12800 ms" "$tmp/batond.log" && cat "$tmp/batond.log") ||
	die "no 12.8 s back-off"
python3 -c '
import resource, signal, socket, sys
n = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
conns = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(n)]
print("held", len(conns), flush=True)
signal.sigwait([signal.SIGTERM])' "$pc" "$HELD" >"$tmp/holder.out" 2>&1 &
holder_pid=$!
held() { [ "$(app_field held held)" = "$HELD" ]; }
wait_for 10 held || die "batond does not hold $HELD connections: $(app_field held held)"
for i in $(seq "$REEXECS"); do run "$i" reexec; done
held_after=$(app_field held held)
[ "$held_after" = "$HELD" ] || die "$held_after connections held after the re-execs, not $HELD"
fds=$(ls /proc/"$batond_pid"/fd | wc -l)

pct() { sort -n | awk -v p="$1" '{v[NR] = $1} END {i = int((NR - 1) * p / 100) + 1; printf "%.1f", v[i]}'; }
jnum() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"; }
col() { # KIND FIELD DIVISOR
	for f in "$tmp"/load-"$1"-*.json; do awk -v v="$(jnum "$f" "$2")" -v d="$3" 'BEGIN {print v / d}'; done
}
{
	echo "batond re-exec: 2 apps of 4 workers (dispatch examples/hello, inherit examples/sdhttp),"
	echo "$HELD connections held by batond for a third app across every re-exec (a batond with $fds fds),"
	echo "$REEXECS re-execs, each in the middle of 300 ms of load (8 connections) on the dispatch app;"
	echo "the same $REEXECS runs without a re-exec for comparison (bench/reexec.sh):"
	echo
	echo "| | median | max |"
	echo "|---|---|---|"
	echo "| batonctl reexec, request to the new image's answer, ms | $(awk '{print $1 / 1000}' "$tmp/reexec.times" | pct 50) | $(awk '{print $1 / 1000}' "$tmp/reexec.times" | pct 100) |"
	echo "| batond's own figure: request to restored (the new program's check included), ms | $(awk '{print $2}' "$tmp/reexec.times" | pct 50) | $(awk '{print $2}' "$tmp/reexec.times" | pct 100) |"
	echo "| batond's pause: state written, exec, restored, ms | $(awk '{print $3}' "$tmp/reexec.times" | pct 50) | $(awk '{print $3}' "$tmp/reexec.times" | pct 100) |"
	echo "| longest request, with a re-exec, ms | $(col reexec max_us 1000 | pct 50) | $(col reexec max_us 1000 | pct 100) |"
	echo "| longest request, without, ms | $(col none max_us 1000 | pct 50) | $(col none max_us 1000 | pct 100) |"
	echo "| longest gap without a completed request, with a re-exec, ms | $(col reexec stall_ms 1 | pct 50) | $(col reexec stall_ms 1 | pct 100) |"
	echo "| longest gap without a completed request, without, ms | $(col none stall_ms 1 | pct 50) | $(col none stall_ms 1 | pct 100) |"
	echo "| failed requests, all runs | $(cat "$tmp"/load-*.json | grep -o '"failed":[0-9]*' | awk -F: '{s += $2} END {print s + 0}') | |"
	echo
} >"$out"
say "wrote $out"

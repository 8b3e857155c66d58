#!/bin/bash
# SPDX-License-Identifier: MIT
# `make demo`: batond serves examples/sdhttp on one port while loadgen keeps it busy for
# ~10 s and batonctl upgrades it three times. Passes only if no request failed and every
# upgrade succeeded. Usage: examples/demo.sh BUILD_DIR   (env: BATON_DEMO_PORT, default 8080)
set -euo pipefail

LOAD_MS=10000
UPGRADES=3
UPGRADE_SPACING_S=2.5

say() { printf 'demo: %s\n' "$*"; }
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
[ -d "$1" ] || die "build directory $1: not found (run: make build)"
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
batond=$build/supervisor/batond
batonctl=$build/supervisor/batonctl
loadgen=$build/bench/loadgen
sdhttp=$build/examples/sdhttp
for bin in "$batond" "$batonctl" "$loadgen" "$sdhttp"; do
	[ -x "$bin" ] || die "$bin: not built (run: make build)"
done
case $sdhttp in
*'"'* | *\\* | *'$'* | *$'\n'*) die "$sdhttp: a path with \" \\ \$ or a newline cannot go in demo.conf" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-demo.XXXXXX")
sock=$tmp/batond.sock
[ ${#sock} -lt 100 ] || die "$sock: too long for a unix socket path (set TMPDIR shorter)"
batond_pid=
loadgen_pid=

# Stops what we started, by pid, and removes the temp dir, however we leave.
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	local pid
	for pid in $loadgen_pid $batond_pid; do
		kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to $2 seconds for our child $1 to exit, then sends TERM, then KILL. Sets
# waited_rc to its exit status. (Not in $(...): a subshell cannot wait for our children.)
wait_bounded() {
	local pid=$1 ticks=$(($2 * 10))
	waited_rc=0
	while kill -0 "$pid" 2>/dev/null && [ "$ticks" -gt 0 ]; do
		sleep 0.1
		ticks=$((ticks - 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "pid $pid still running after $2 s: sending SIGTERM" >&2
		kill -TERM "$pid" 2>/dev/null || true
		sleep 2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" || waited_rc=$?
}

# Something has the port open, in any state (listening, connected, TIME_WAIT)?
port_in_use() {
	local hex
	hex=$(printf '%04X' "$1")
	grep -qs ":$hex " /proc/net/tcp /proc/net/tcp6
}

port=${BATON_DEMO_PORT:-8080}
case $port in
'' | *[!0-9]*) die "BATON_DEMO_PORT=$port: not a port number" ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
	die "BATON_DEMO_PORT=$port: not a port number"
fi
if port_in_use "$port"; then
	wanted=$port
	for _ in $(seq 100); do
		port=$((20000 + RANDOM % 30000))
		port_in_use "$port" || break
	done
	port_in_use "$port" && die "no free port found"
	say "port $wanted is busy, using $port"
fi

sed_escape() { printf '%s' "$1" | sed -e 's/[|&\\]/\\&/g'; }
sed -e "s|@PORT@|$port|g" \
	-e "s|@CONTROL@|$(sed_escape "$sock")|g" \
	-e "s|@SDHTTP@|$(sed_escape "$sdhttp")|g" \
	"$root/conf/demo.conf" >"$tmp/demo.conf"

say "starting batond on http://127.0.0.1:$port (2 sdhttp workers)"
"$batond" -c "$tmp/demo.conf" >"$tmp/batond.log" 2>&1 &
batond_pid=$!

fail_with_log() {
	say "$1" >&2
	say "batond's log:" >&2
	sed 's/^/  | /' "$tmp/batond.log" >&2
	exit 1
}

for _ in $(seq 100); do
	[ -S "$sock" ] && break
	kill -0 "$batond_pid" 2>/dev/null || fail_with_log "batond exited at start"
	sleep 0.1
done
[ -S "$sock" ] || fail_with_log "no control socket $sock after 10 s"

# Serving? One request waits in the listener's backlog until generation 1 accepts it.
serving=no
for _ in $(seq 10); do
	if "$loadgen" --port "$port" --connections 1 --duration-ms 1 --quiet >/dev/null 2>&1; then
		serving=yes
		break
	fi
	kill -0 "$batond_pid" 2>/dev/null || fail_with_log "batond exited"
	sleep 0.5
done
[ "$serving" = yes ] || fail_with_log "nothing answers on port $port"

say "load: 8 keep-alive connections for $((LOAD_MS / 1000)) s; $UPGRADES upgrades meanwhile"
"$loadgen" --port "$port" --connections 8 --keepalive --duration-ms "$LOAD_MS" \
	--timeline-ms 500 >"$tmp/loadgen.out" 2>&1 &
loadgen_pid=$!

upgrades_ok=0
upgrade_report=()
for i in $(seq "$UPGRADES"); do
	sleep "$UPGRADE_SPACING_S"
	rc=0
	out=$("$batonctl" -s "$sock" upgrade web 2>&1) || rc=$?
	say "upgrade $i: $out"
	upgrade_report+=("upgrade $i: $out")
	if [ "$rc" -eq 0 ]; then
		upgrades_ok=$((upgrades_ok + 1))
	else
		upgrade_report+=("upgrade $i: batonctl exited $rc")
	fi
done

wait_bounded "$loadgen_pid" $((LOAD_MS / 1000 + 5))
loadgen_rc=$waited_rc
loadgen_pid=

stop_rc=0
"$batonctl" -s "$sock" stop >/dev/null 2>&1 || stop_rc=$?
wait_bounded "$batond_pid" 15
batond_rc=$waited_rc
batond_pid=

line=$(grep '^loadgen: ' "$tmp/loadgen.out" | tail -n 1 || true)
field() { printf '%s\n' "$line" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
ok=$(field ok)
failed=$(field failed)

echo
sed -n '/^loadgen: /!p' "$tmp/loadgen.out"
echo
echo "== baton demo summary =="
for r in "${upgrade_report[@]}"; do
	echo "$r"
done
echo "requests: ok=${ok:-?} failed=${failed:-?} (p99 $(field p99_us) us, longest stall $(field stall_ms) ms, generations $(field gens))"
echo "batonctl stop: exit $stop_rc; batond: exit $batond_rc"

if [ -n "$ok" ] && [ "$ok" -gt 0 ] && [ "$failed" = 0 ] && [ "$loadgen_rc" = 0 ] &&
	[ "$upgrades_ok" -eq "$UPGRADES" ]; then
	echo "PASS: $UPGRADES of $UPGRADES upgrades, $ok requests, none failed"
	exit 0
fi
echo "FAIL: $upgrades_ok of $UPGRADES upgrades succeeded, ${failed:-?} requests failed (loadgen exit $loadgen_rc)"
say "batond's log:"
sed 's/^/  | /' "$tmp/batond.log"
exit 1

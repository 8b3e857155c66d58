#!/bin/bash
# SPDX-License-Identifier: MIT
# `make bench`: measures zero-downtime upgrades side by side with the alternatives, and
# baton's fd passing beside raw sendmsg. Writes BUILD_DIR/bench/report.md and
# BUILD_DIR/bench/throughput.png. Usage: bench/run.sh BUILD_DIR
#
# Every scenario runs the same app (examples/hello: 100 ms start-up delay before it
# listens or says READY=1), one process at a time, under the same load (loadgen: 8
# connections, a new connection per request), with the same upgrade schedule:
#   baseline   no upgrade
#   naive      stop the app, then start the next one, which binds the port itself
#   reuseport  start the next one beside it with SO_REUSEPORT, once READY stop the old
#   inherit    batond, mode = inherit, `batonctl upgrade`
#   dispatch   batond, mode = dispatch, `batonctl upgrade`
# Then dispatch against inherit without upgrades, with 1 and 2 workers (issue 4's
# throughput comparison), fd passing, and the upgrade latency with long-lived
# connections on the old generation, serialised against overlapping (issue 15), and what
# a batond re-exec costs (bench/reexec.sh, issue 13).
# Env: BENCH_UPGRADES (100), BENCH_SPACING_MS (240), BENCH_CONNECTIONS (8), BENCH_STEADY_MS (1500), BENCH_STEADY_RUNS ("1x8 2x64"), BENCH_STEADY_ROUNDS (4),
#      BENCH_STARTUP_MS (100), BENCH_SCENARIOS ("baseline naive reuseport inherit dispatch";
#      set and empty: none, for the steady comparison alone), BENCH_REEXECS (10; 0: no
#      bench/reexec.sh at all),
#      BENCH_IDLE_UPGRADES (10: upgrades timed without load before each scenario's run),
#      BENCH_OWN_UPGRADES (20: upgrades without load sent by bench/ctlupgrade, no batonctl,
#      for batond's own part),
#      BENCH_LL_CONNECTIONS (1000), BENCH_LL_UPGRADES (3), BENCH_LL_DRAIN_S (3): the
#      long-lived connections held on each generation an upgrade replaces, the upgrades
#      back to back, and the app's drain-timeout there.
set -euo pipefail

# bash reads a script while it runs it: run a private copy, so that an edit of this file
# during a 3-minute run cannot break the run.
if [ -z "${BENCH_SELF_COPY:-}" ]; then
	self_copy=$(mktemp "${TMPDIR:-/tmp}/baton-bench-run.XXXXXX")
	cp "$0" "$self_copy"
	BENCH_SELF_COPY=$self_copy BENCH_ROOT=$(cd "$(dirname "$0")/.." && pwd) exec bash "$self_copy" "$@"
fi
rm -f "$BENCH_SELF_COPY"

UPGRADES=${BENCH_UPGRADES:-100}
SPACING_MS=${BENCH_SPACING_MS:-240}
STEADY_MS=${BENCH_STEADY_MS:-1500}
STEADY_ROUNDS=${BENCH_STEADY_ROUNDS:-4}
# dispatch vs inherit: "workers connections" pairs. 8 connections in flight make the
# load latency-bound (rps = 8 / latency); 64 saturate the CPUs (capacity).
# Rounds alternate inherit and dispatch, so that drifts of a shared machine hit both.
STEADY_RUNS=${BENCH_STEADY_RUNS:-1x8 2x64}
CONNECTIONS=${BENCH_CONNECTIONS:-8}
STARTUP_MS=${BENCH_STARTUP_MS:-100}
IDLE_UPGRADES=${BENCH_IDLE_UPGRADES:-10}
OWN_UPGRADES=${BENCH_OWN_UPGRADES:-20}
IDLE_SPACING_MS=$((STARTUP_MS + 50))
LL_CONNECTIONS=${BENCH_LL_CONNECTIONS:-1000}
LL_UPGRADES=${BENCH_LL_UPGRADES:-3}
LL_DRAIN_S=${BENCH_LL_DRAIN_S:-3}
SCENARIOS=${BENCH_SCENARIOS-baseline naive reuseport inherit dispatch}
REEXECS=${BENCH_REEXECS:-10}
FIRST_MS=500
TAIL_MS=600
DURATION_MS=$((FIRST_MS + (UPGRADES - 1) * SPACING_MS + TAIL_MS))
[ "$UPGRADES" -gt 0 ] || DURATION_MS=$((FIRST_MS + TAIL_MS))

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
	printf 'bench: %s\n' "$*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
[ -d "$1" ] || die "build directory $1: not found (run: make build)"
build=$(cd "$1" && pwd)
root=$BENCH_ROOT
bin=$build/bench
batond=$build/supervisor/batond
batonctl=$build/supervisor/batonctl
app=$build/examples/hello
parksrv=$build/tests/apps/parksrv
for b in "$batond" "$batonctl" "$bin/loadgen" "$app" "$bin/upgrader" "$bin/fdpass" "$bin/ctlupgrade" "$bin/holdconns" "$parksrv"; do
	[ -x "$b" ] || die "$b: not built (run: make build)"
done
command -v gnuplot >/dev/null || die "gnuplot: not installed (apt-get install gnuplot-nox)"
out=$build/bench
t_begin=$(date +%s)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-bench.XXXXXX")
case $tmp in
*' '* | *'"'* | *\\* | *'$'*) die "$tmp: spaces, quotes, \\ or \$ in the temp path" ;;
esac
case $bin in
*' '* | *'"'* | *\\* | *'$'*) die "$bin: spaces, quotes, \\ or \$ in the build path" ;;
esac
batond_pid=

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	if [ -n "$batond_pid" ] && kill -0 "$batond_pid" 2>/dev/null; then
		kill -TERM "$batond_pid" 2>/dev/null || true
		wait "$batond_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() {
	local hex
	hex=$(printf '%04X' "$1")
	grep -qs ":$hex " /proc/net/tcp /proc/net/tcp6
}

free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		port_in_use "$p" || {
			echo "$p"
			return
		}
	done
	die "no free port found"
}

# Waits up to $2 seconds for our child $1, then TERM, then KILL.
wait_bounded() {
	local pid=$1 ticks=$(($2 * 50))
	while kill -0 "$pid" 2>/dev/null && [ "$ticks" -gt 0 ]; do
		sleep 0.02
		ticks=$((ticks - 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		sleep 2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# CPU time, in 1/100 s: all processes' user and system time and the hypervisor's steal
# (/proc/stat), and what this script's reaped
# children used (bash's `times`: loadgen, the upgrader, batond and its workers). The
# difference over a scenario is what other processes on the machine took from it.
# cpu_mark VAR sets VAR to "busy ours". Not in $(...): a subshell's `times` is its own.
cpu_mark() {
	local busy ours
	busy=$(awk '/^cpu / {print $2 + $3 + $4 + $9; exit}' /proc/stat) # user nice system steal
	times >"$tmp/times"
	ours=$(sed -n 2p "$tmp/times" | awk '{
		t = 0
		for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
		printf "%d", t * 100 }')
	printf -v "$1" '%s %s' "$busy" "$ours"
}
# foreign_cpu BEFORE AFTER WALL_MS: other processes' share of all CPUs, in percent.
foreign_cpu() {
	awk -v b="$1" -v a="$2" -v w="$3" -v n="$(nproc)" 'BEGIN {
		split(b, x, " "); split(a, y, " ")
		f = (y[1] - x[1]) - (y[2] - x[2]); if (f < 0) f = 0
		printf "%.0f", 100 * f * 10 / (w * n) }'
}

# idle_pass NAME MODE ARGS...: IDLE_UPGRADES upgrades without load (the upgrader's "load"
# is a sleep), timed like the loaded ones, into upgrades-NAME-idle.log.
idle_pass() {
	local name=$1 mode=$2
	shift 2
	[ "$IDLE_UPGRADES" -gt 0 ] || return 0
	"$bin/upgrader" --mode "$mode" --upgrades "$IDLE_UPGRADES" --first-ms 100 \
		--spacing-ms "$IDLE_SPACING_MS" --log "$tmp/upgrades-$name-idle.log" "$@" \
		-- sleep "$(awk -v ms=$((100 + IDLE_UPGRADES * IDLE_SPACING_MS + 300)) 'BEGIN {print ms / 1000}')" \
		>"$tmp/$name-idle.out" 2>&1 || true
}

loadgen_args() { # port json
	echo "$bin/loadgen --port $1 --connections $CONNECTIONS --duration-ms $DURATION_MS" \
		"--timeline-ms 100 --json $2 --quiet"
}

# run_own NAME MODE [--reuseport]: an app the upgrader starts and upgrades itself.
run_own() {
	local name=$1 mode=$2 extra=${3:-} port
	port=$(free_port)
	: >"$tmp/startup-$name.log"
	if [ "$mode" != none ] && [ "$UPGRADES" -gt 0 ]; then
		idle_pass "$name" "$mode" --app "$app --port $(free_port) --startup-delay-ms $STARTUP_MS $extra --startup-log $tmp/startup-$name.log"
	fi
	# shellcheck disable=SC2046 # loadgen's arguments are split on purpose
	"$bin/upgrader" --mode "$mode" --upgrades "$UPGRADES" --first-ms "$FIRST_MS" \
		--spacing-ms "$SPACING_MS" --log "$tmp/upgrades-$name.log" \
		--app "$app --port $port --startup-delay-ms $STARTUP_MS $extra --startup-log $tmp/startup-$name.log" \
		-- $(loadgen_args "$port" "$tmp/$name.json") >"$tmp/$name.out" 2>&1 || true
}

# run_batond NAME MODE: batond serves the app; the upgrader runs `batonctl upgrade`.
# server_ticks PID SOCK: CPU (user + system, clock ticks) used so far by batond (PID)
# and the workers its status names.
server_ticks() {
	local t=0 p
	for p in "$1" $("$batonctl" -s "$2" status --json 2>/dev/null |
		grep -o '"index":[0-9]*,"pid":[0-9]*' | sed 's/.*://'); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

run_batond() {
	local name=$1 mode=$2 port sock=$tmp/batond-$2.sock ticks0=0
	port=$(free_port)
	: >"$tmp/startup-$name.log"
	sed -e "s|@PORT@|$port|g" -e "s|@CONTROL@|$sock|g" -e "s|@MODE@|$mode|g" -e "s|@WORKERS@|${WORKERS:-1}|g" \
		-e "s|@EXEC@|\"$app\", \"--startup-delay-ms\", \"$STARTUP_MS\", \"--startup-log\", \"$tmp/startup-$name.log\"|" \
		"$root/bench/bench.conf.in" >"$tmp/$name.conf"
	"$batond" -c "$tmp/$name.conf" >"$tmp/batond-$name.log" 2>&1 &
	batond_pid=$!
	for _ in $(seq 500); do
		[ -S "$sock" ] && break
		kill -0 "$batond_pid" 2>/dev/null || break
		sleep 0.02
	done
	[ -S "$sock" ] || {
		sed 's/^/  | /' "$tmp/batond-$name.log" >&2
		die "$name: batond did not start"
	}
	# Serving? (generation 1 is ready: its start-up line is in the log)
	for _ in $(seq 500); do
		[ -s "$tmp/startup-$name.log" ] && break
		sleep 0.01
	done
	"$bin/loadgen" --port "$port" --connections 1 --duration-ms 100 --quiet >/dev/null 2>&1 ||
		die "$name: nothing answers on port $port"
	[ "$UPGRADES" -eq 0 ] || idle_pass "$name" ctl --ctl "$batonctl -s $sock upgrade bench" --ctl-out "$tmp/ctl-$name.out"
	# batond's own part: the same upgrades sent on one control connection, no batonctl.
	if [ "$UPGRADES" -gt 0 ] && [ "$OWN_UPGRADES" -gt 0 ]; then
		"$bin/ctlupgrade" --socket "$sock" --app bench --upgrades "$OWN_UPGRADES" \
			--spacing-ms "$IDLE_SPACING_MS" --log "$tmp/own-$name.log" >"$tmp/own-$name.out" 2>&1 || true
	fi
	# Without upgrades the workers stay: the server's CPU over the load is measured.
	[ "$UPGRADES" -gt 0 ] || ticks0=$(server_ticks "$batond_pid" "$sock")
	# shellcheck disable=SC2046 # loadgen's arguments are split on purpose
	"$bin/upgrader" --mode ctl --upgrades "$UPGRADES" --first-ms "$FIRST_MS" \
		--spacing-ms "$SPACING_MS" --log "$tmp/upgrades-$name.log" \
		--ctl "$batonctl -s $sock upgrade bench" --ctl-out "$tmp/ctl-$name.out" \
		-- $(loadgen_args "$port" "$tmp/$name.json") >"$tmp/$name.out" 2>&1 || true
	[ "$UPGRADES" -gt 0 ] || echo $(($(server_ticks "$batond_pid" "$sock") - ticks0)) >"$tmp/ticks-$name"
	"$batonctl" -s "$sock" stop >/dev/null 2>&1 || true
	wait_bounded "$batond_pid" 15
	batond_pid=
}

say "$(echo "$SCENARIOS" | wc -w) scenarios of $((DURATION_MS / 1000)) s, $UPGRADES upgrades" \
	"$SPACING_MS ms apart, $CONNECTIONS connections, app start-up $STARTUP_MS ms"
cpu_before='' cpu_after=''
for s in $SCENARIOS; do
	say "scenario $s"
	cpu_mark cpu_before
	t_before=$(date +%s%N)
	case $s in
	baseline) run_own baseline none ;;
	naive) run_own naive naive ;;
	reuseport) run_own reuseport reuseport --reuseport ;;
	inherit) run_batond inherit inherit ;;
	dispatch) run_batond dispatch dispatch ;;
	*) die "unknown scenario $s" ;;
	esac
	cpu_mark cpu_after
	foreign_cpu "$cpu_before" "$cpu_after" "$((($(date +%s%N) - t_before) / 1000000))" >"$tmp/foreign-$s"
	grep -h '^loadgen: \|^upgrader: ' "$tmp/$s.out" | sed 's/^/  /' >&2 || true
done

say "dispatch vs inherit, no upgrades, $STEADY_ROUNDS rounds of $STEADY_MS ms each"
for run in $STEADY_RUNS; do
	w=${run%x*} c=${run#*x}
	for r in $(seq "$STEADY_ROUNDS"); do
		for m in inherit dispatch; do
			UPGRADES=0 DURATION_MS=$STEADY_MS WORKERS=$w CONNECTIONS=$c \
				run_batond "steady-$m-$run-$r" "$m"
			grep -h '^loadgen: ' "$tmp/steady-$m-$run-$r.out" |
				sed "s/^/  $m, $w workers, $c connections: /" >&2 || true
		done
	done
done

say "fd passing"
"$bin/fdpass" --ms 200 --rounds 5 >"$tmp/fdpass.out"
sed 's/^/  /' "$tmp/fdpass.out" >&2

: >"$tmp/reexec.md"
if [ "$REEXECS" -gt 0 ]; then
	say "batond re-exec (bench/reexec.sh)"
	"$BENCH_ROOT/bench/reexec.sh" "$build" "$tmp/reexec.md"
fi

# run_longlived MODE: LL_UPGRADES upgrades of a line server (tests/apps/parksrv --hold:
# it serves its open connections on while it drains), each after LL_CONNECTIONS idle
# clients connected to the serving generation and stay. serialised: `batonctl upgrade
# --wait-drain`, which returns once the old generation is gone, as every upgrade did
# before generations overlapped; overlapping: `batonctl upgrade`. Each upgrade's wall
# time (request to batonctl's exit: the new generation serves) goes to ll-MODE.log.
run_longlived() {
	local mode=$1 port sock=$tmp/batond-ll.sock wait_drain='' holders=() t0 t1 rc
	[ "$mode" = serialised ] && wait_drain=--wait-drain
	port=$(free_port)
	printf '%s\n' "control { socket = \"$sock\" }" \
		"listener http { address = \"tcp://127.0.0.1:$port\" }" \
		"app bench {" "	exec = { \"$parksrv\", \"--hold\" }" "	listeners = { \"http\" }" \
		"	mode = dispatch" "	drain-timeout = $LL_DRAIN_S" \
		"	limit-nofile = $((LL_CONNECTIONS * 2 + 64))" "}" >"$tmp/ll-$mode.conf"
	"$batond" -c "$tmp/ll-$mode.conf" >"$tmp/batond-ll-$mode.log" 2>&1 &
	batond_pid=$!
	for _ in $(seq 500); do
		"$batonctl" -s "$sock" status --check >/dev/null 2>&1 && break
		kill -0 "$batond_pid" 2>/dev/null || die "long-lived: batond did not start"
		sleep 0.02
	done
	: >"$tmp/ll-$mode.log"
	for i in $(seq "$LL_UPGRADES"); do
		"$bin/holdconns" --port "$port" --connections "$LL_CONNECTIONS" >"$tmp/hold-$mode-$i.out" 2>&1 &
		holders+=($!)
		for _ in $(seq 1500); do
			grep -q '^holdconns: held' "$tmp/hold-$mode-$i.out" && break
			kill -0 "${holders[-1]}" 2>/dev/null || break
			sleep 0.02
		done
		grep -q '^holdconns: held' "$tmp/hold-$mode-$i.out" ||
			die "long-lived $mode: $(cat "$tmp/hold-$mode-$i.out")"
		rc=0
		t0=$(date +%s%N)
		"$batonctl" -s "$sock" upgrade $wait_drain bench >>"$tmp/ctl-ll-$mode.out" 2>&1 || rc=$?
		t1=$(date +%s%N)
		echo "$i $(((t1 - t0) / 1000)) $rc" >>"$tmp/ll-$mode.log"
	done
	kill -TERM "${holders[@]}" 2>/dev/null || true
	wait "${holders[@]}" 2>/dev/null || true
	"$batonctl" -s "$sock" stop >/dev/null 2>&1 || true
	wait_bounded "$batond_pid" 15
	batond_pid=
}

if [ "$LL_UPGRADES" -gt 0 ]; then
	say "upgrade latency, $LL_CONNECTIONS long-lived connections on each old generation"
	for m in serialised overlapping; do
		run_longlived "$m"
		awk -v m="$m" '{printf "  %s: upgrade %d: %.1f ms, batonctl exit %d\n", m, $1, $2 / 1000, $3}' \
			"$tmp/ll-$m.log" >&2
	done
fi

# ---- the report ------------------------------------------------------------------------
jnum() { sed -n "s/.*\"$2\":\([-0-9.]*\).*/\1/p" "$1"; }
# The k-th percentile (nearest rank) of the numbers on stdin.
pct() { sort -n | awk -v k="$1" '{v[NR]=$1} END {if (!NR) {print "-"; exit} i=int((k*NR+99)/100); if (i<1) i=1; print v[i]}'; }

# cost_row NAME UPGRADE_LOG STARTUP_LOG: one row of an upgrade cost table. An upgrade
# (i start_ms wall_us status start_us) is paired with the generation that said READY=1
# while it ran (gen pid startup_us ready_us): wall, start-up, READY=1 after the start.
# cost_pairs UPGRADE_LOG STARTUP_LOG: "wall start-up ready_offset" (µs) per upgrade
# that succeeded, paired with the start-up of the generation that got ready during it.
cost_pairs() {
	awk 'NR == FNR {st[NR] = $3; rd[NR] = $4; n = NR; next}
	     $4 == 0 {for (k = 1; k <= n; k++) if (rd[k] >= $5 && rd[k] <= $5 + $3) {
			print $3, st[k], rd[k] - $5; break }}' "$2" "$1" >"$tmp/pairs"
}
col() { awk "{print ($1) / 1000}" "$tmp/pairs" | pct "$2"; }

# overhead_median UPGRADE_LOG STARTUP_LOG: the median overhead in ms, for the
# reference column (naive's: what starting the app by hand costs beyond its start-up).
overhead_median() {
	[ -s "$1" ] || return 0
	cost_pairs "$1" "$2"
	col '$1 - $2' 50
}

# cost_row NAME UPGRADE_LOG STARTUP_LOG REFERENCE_MS
cost_row() {
	cost_pairs "$2" "$3"
	local beyond=-
	if [ -n "$4" ] && [ "$1" != naive ]; then
		beyond=$(awk -v o="$(col '$1 - $2' 50)" -v r="$4" 'BEGIN {printf "%.3f", o - r}')
	fi
	echo "| $1 | $(awk '$4 == 0' "$2" | wc -l)/$(wc -l <"$2") | $(col '$1' 50) | $(col '$1' 90)" \
		"| $(col '$2' 50) | $(col '$1 - $2' 50) | $(col '$1 - $2' 90)" \
		"| $(col '$3 - $2' 50) | $(col '$1 - $3' 50) | $beyond |"
}

report=$out/report.md
{
	echo "# baton benchmark"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'); Linux $(uname -r), $(nproc) CPUs," \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)."
	echo "Load: loadgen, $CONNECTIONS connections, a new connection per request," \
		"$((DURATION_MS / 1000)).$(((DURATION_MS % 1000) / 100)) s per scenario." \
		"App: examples/hello, one process, $STARTUP_MS ms start-up before it listens" \
		"or says READY=1. Upgrades: $UPGRADES per scenario, every $SPACING_MS ms from" \
		"$FIRST_MS ms on."
	echo
	echo "| scenario | upgrades | ok | failed | refused | reset | timeout | short | other | rps | p50 ms | p99 ms | p99.9 ms | max ms | longest stall ms | other processes' CPU |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for s in $SCENARIOS; do
		j=$tmp/$s.json
		if [ ! -s "$j" ]; then
			echo "| $s | no result (loadgen did not finish) |"
			continue
		fi
		n_up=0
		if [ -s "$tmp/upgrades-$s.log" ]; then
			n_up="$(awk '$4 == 0' "$tmp/upgrades-$s.log" | wc -l)/$(wc -l <"$tmp/upgrades-$s.log")"
		fi
		ms() { awk -v u="$(jnum "$j" "$1")" 'BEGIN {printf "%.2f", u / 1000}'; }
		echo "| $s | $n_up | $(jnum "$j" ok) | $(jnum "$j" failed) | $(jnum "$j" refused)" \
			"| $(jnum "$j" reset) | $(jnum "$j" timeout) | $(jnum "$j" short) | $(jnum "$j" other)" \
			"| $(jnum "$j" rps | cut -d. -f1) | $(ms p50_us) | $(ms p99_us) | $(ms p999_us)" \
			"| $(ms max_us) | $(jnum "$j" stall_ms) | $(cat "$tmp/foreign-$s" 2>/dev/null || echo -)% |"
	done
	echo
	echo "*Other processes' CPU*: the user and system time of processes outside the benchmark,"
	echo "plus the hypervisor's steal, during the scenario, as a share of all $(nproc) CPUs"
	echo "(/proc/stat minus what the benchmark's own processes used). Above a few percent, the"
	echo "scenario shared the machine and its figures are disturbed."
	echo
	echo "When the longest stall began, against the upgrade that had begun last before it:"
	echo
	for s in $SCENARIOS; do
		j=$tmp/$s.json u=$tmp/upgrades-$s.log
		[ -s "$j" ] || continue
		at=$(jnum "$j" stall_at_ms)
		if [ -s "$u" ]; then
			# upgrade starts on loadgen's clock: both logs carry CLOCK_MONOTONIC
			# An upgrade due inside the stall that the upgrader began late: the
			# upgrader (asleep, waiting for its time) was not run either, so the
			# whole machine stalled, not only the service.
			awk -v at="$at" -v s="$s" -v len="$(jnum "$j" stall_ms)" -v t0="$(jnum "$j" start_mono_us)" \
				-v first="$FIRST_MS" -v spacing="$SPACING_MS" \
				'{t = t0 ? ($5 - t0) / 1000 : $2}
				 t <= at {k = $1; st = t; w = $3}
				 {due = first + ($1 - 1) * spacing
				  if (due >= at - 1 && due <= at + len && $2 - due > slip) {slip = $2 - due; sk = $1}}
				 END {if (k) printf "- %s: %.1f ms from %.2f s, %.1f ms after upgrade %d began (it took %.1f ms)", s, len, at / 1000, at - st, k, w / 1000
				      else printf "- %s: %.1f ms from %.2f s, before the first upgrade", s, len, at / 1000
				      if (slip > 5) printf "; upgrade %d, due in that time, began %.1f ms late: the machine stalled, not only the service", sk, slip
				      printf "\n"}' "$u"
		else
			awk -v at="$at" -v s="$s" -v len="$(jnum "$j" stall_ms)" \
				'BEGIN {printf "- %s: %.1f ms from %.2f s\n", s, len, at / 1000}'
		fi
	done
	echo
	echo "Upgrade cost, over the upgrades of each scenario: wall time of one upgrade; the new"
	echo "app's own start-up (main() to READY=1, as it logs it: the $STARTUP_MS ms delay plus"
	echo "its set-up); overhead = wall - start-up, split into *to start* (upgrade begins to"
	echo "the new app's main()) and *after READY* (READY=1 to the upgrade's end: for batond the"
	echo "old generation's drain and exit, which \`batonctl upgrade\` waits for). batond: the"
	echo "wall time of \`batonctl upgrade\`, exec to exit. naive, reuseport: bench/upgrader.c's"
	echo "own stop/start/wait for READY=1 (reuseport stops the old one after READY, untimed)."
	echo "*Beyond a direct start*: overhead minus naive's, that is, beyond what starting the"
	echo "same app by hand costs (fork, exec, dynamic linking, then noticing its READY=1)."
	echo
	cost_header="| scenario | upgrades ok | wall median ms | wall p90 ms | app start-up median ms | overhead median ms | overhead p90 ms | to start median ms | after READY median ms | beyond a direct start median ms |"
	cost_rule="|---|---|---|---|---|---|---|---|---|---|"
	echo "$cost_header"
	echo "$cost_rule"
	ref=$(overhead_median "$tmp/upgrades-naive.log" "$tmp/startup-naive.log")
	for s in $SCENARIOS; do
		u=$tmp/upgrades-$s.log
		[ -s "$u" ] || continue
		cost_row "$s" "$u" "$tmp/startup-$s.log" "$ref"
	done
	echo
	echo "The same, measured just before each scenario's run, without load ($IDLE_UPGRADES upgrades,"
	echo "$IDLE_SPACING_MS ms apart): what an upgrade costs when the CPUs are free."
	echo
	echo "$cost_header"
	echo "$cost_rule"
	ref=$(overhead_median "$tmp/upgrades-naive-idle.log" "$tmp/startup-naive.log")
	for s in $SCENARIOS; do
		u=$tmp/upgrades-$s-idle.log
		[ -s "$u" ] || continue
		cost_row "$s" "$u" "$tmp/startup-$s.log" "$ref"
	done
	echo
	if [ "$OWN_UPGRADES" -gt 0 ] && ls "$tmp"/own-*.log >/dev/null 2>&1; then
		# A direct start of the same app, for reference: the reuseport scenario's fork
		# and exec by bench/upgrader to the app's main(), without load.
		direct=-
		if [ -s "$tmp/upgrades-reuseport-idle.log" ]; then
			cost_pairs "$tmp/upgrades-reuseport-idle.log" "$tmp/startup-reuseport.log"
			direct=$(col '$3 - $2' 50)
		fi
		echo "batond's own part of an upgrade, without load and without batonctl's start-up:"
		echo "$OWN_UPGRADES upgrades sent one after the other on one control connection"
		echo "(bench/ctlupgrade, $IDLE_SPACING_MS ms apart), each paired with the new generation's"
		echo "main() and READY=1 (examples/hello's log, CLOCK_MONOTONIC). *Request to main()*:"
		echo "batond reads the request, clones the child into its cgroup, sets it up (fds, environment) and"
		echo "execs, and the app's dynamic linking runs; *a direct start*: the same app forked and"
		echo "exec'd by bench/upgrader to its main() (the reuseport scenario, without load: $direct ms"
		echo "median), so *batond to exec* is the difference; *READY=1 to reply*: batond reads the"
		echo "notification, marks the generation ready, tells the old one to drain and answers."
		echo
		echo "| mode | upgrades ok | request to main() median ms | p90 | batond to exec median ms | READY=1 to reply median ms | p90 | batond's own part median ms |"
		echo "|---|---|---|---|---|---|---|---|"
		for s in $SCENARIOS; do
			o=$tmp/own-$s.log
			[ -s "$o" ] || continue
			awk 'NR == FNR {main[NR] = $4 - $3; rd[NR] = $4; n = NR; next}
			     $4 == 0 {for (k = 1; k <= n; k++) if (rd[k] >= $2 && rd[k] <= $3) {
				print main[k] - $2, $3 - rd[k]; break }}' "$tmp/startup-$s.log" "$o" >"$tmp/own-pairs"
			[ -s "$tmp/own-pairs" ] || continue
			tm=$(awk '{print $1 / 1000}' "$tmp/own-pairs" | pct 50)
			ar=$(awk '{print $2 / 1000}' "$tmp/own-pairs" | pct 50)
			own=$(awk '{print ($1 + $2) / 1000}' "$tmp/own-pairs" | pct 50)
			echo "| $s | $(awk '$4 == 0' "$o" | wc -l)/$(wc -l <"$o") | $tm" \
				"| $(awk '{print $1 / 1000}' "$tmp/own-pairs" | pct 90)" \
				"| $(awk -v a="$tm" -v d="$direct" 'BEGIN {if (d == "-") print "-"; else printf "%.3f", a - d}')" \
				"| $ar | $(awk '{print $2 / 1000}' "$tmp/own-pairs" | pct 90)" \
				"| $(awk -v o="$own" -v d="$direct" 'BEGIN {if (d == "-") print "-"; else printf "%.3f", o - d}') |"
		done
		echo
	fi
	echo "Dispatch against inherit, same app (examples/hello), same load, no upgrades,"
	echo "$STEADY_ROUNDS rounds of $STEADY_MS ms per mode, inherit and dispatch alternating;"
	echo "rps are the means over the rounds, the ratio is theirs, then each round's and their"
	echo "median; server CPU: batond's and its workers' user + system time over the load"
	echo "(/proc/PID/stat, in clock ticks of $((1000 / $(getconf CLK_TCK))) ms), per request served:"
	echo
	echo "| workers | connections | inherit rps | dispatch rps | dispatch / inherit | per round | median round | failed | inherit p99 ms | dispatch p99 ms | server CPU per request, inherit µs | dispatch µs | dispatch / inherit |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for run in $STEADY_RUNS; do
		si=0 sd=0 rounds="" failed=0 n=0 ti=0 td=0 oki=0 okd=0
		: >"$tmp/p99-inherit" && : >"$tmp/p99-dispatch"
		for r in $(seq "$STEADY_ROUNDS"); do
			i=$tmp/steady-inherit-$run-$r.json d=$tmp/steady-dispatch-$run-$r.json
			[ -s "$i" ] && [ -s "$d" ] || continue
			jnum "$i" p99_us >>"$tmp/p99-inherit"
			jnum "$d" p99_us >>"$tmp/p99-dispatch"
			si=$(awk -v a="$si" -v b="$(jnum "$i" rps)" 'BEGIN {print a + b}')
			sd=$(awk -v a="$sd" -v b="$(jnum "$d" rps)" 'BEGIN {print a + b}')
			rounds="$rounds${rounds:+, }$(awk -v a="$(jnum "$d" rps)" -v b="$(jnum "$i" rps)" 'BEGIN {printf "%.2f", a / b}')"
			failed=$((failed + $(jnum "$i" failed) + $(jnum "$d" failed)))
			ti=$((ti + $(cat "$tmp/ticks-steady-inherit-$run-$r" 2>/dev/null || echo 0)))
			td=$((td + $(cat "$tmp/ticks-steady-dispatch-$run-$r" 2>/dev/null || echo 0)))
			oki=$((oki + $(jnum "$i" ok))) okd=$((okd + $(jnum "$d" ok)))
			n=$((n + 1))
		done
		[ "$n" -gt 0 ] || continue
		echo "| ${run%x*} | ${run#*x} | $(awk -v s="$si" -v n="$n" 'BEGIN {printf "%d", s / n}')" \
			"| $(awk -v s="$sd" -v n="$n" 'BEGIN {printf "%d", s / n}')" \
			"| $(awk -v a="$sd" -v b="$si" 'BEGIN {printf "%.2f", a / b}') | $rounds" \
			"| $(echo "$rounds" | tr ',' '\n' | pct 50) | $failed" \
			"| $(awk '{print $1 / 1000}' "$tmp/p99-inherit" | pct 50)" \
			"| $(awk '{print $1 / 1000}' "$tmp/p99-dispatch" | pct 50)" \
			"| $(awk -v t="$ti" -v n="$oki" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", n ? t * 1e6 / hz / n : 0}')" \
			"| $(awk -v t="$td" -v n="$okd" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", n ? t * 1e6 / hz / n : 0}')" \
			"| $(awk -v a="$td" -v b="$okd" -v c="$ti" -v d="$oki" 'BEGIN {printf "%.2f", (b && c && d) ? (a / b) / (c / d) : 0}') |"
	done
	echo
	echo "The p99 columns (median over the rounds) are each mode's latency without upgrades:"
	echo "the 1-worker row had the scenarios' load, so it tells the cost of the mode apart"
	echo "from the cost of the upgrades in the first table."
	echo
	echo "fd passing over an AF_UNIX SOCK_SEQPACKET socketpair, one thread, send then receive"
	echo "and close (bench/fdpass.c; median of 5 rounds of 200 ms, proto and raw alternating):"
	echo
	echo "| fds per message | baton protocol fds/s | raw sendmsg/recvmsg fds/s | protocol / raw |"
	echo "|---|---|---|---|"
	sed -n 's/^fdpass: fds=\([0-9]*\) proto_fds_per_s=\([0-9]*\) raw_fds_per_s=\([0-9]*\) ratio=\([0-9.]*\)/| \1 | \2 | \3 | \4 |/p' \
		"$tmp/fdpass.out"
	echo
	if [ "$LL_UPGRADES" -gt 0 ]; then
		echo "Upgrade latency with long-lived connections: $LL_UPGRADES upgrades back to back of"
		echo "a line server (tests/apps/parksrv --hold, dispatch mode, drain-timeout $LL_DRAIN_S s)"
		echo "that serves its open connections on while it drains; before each upgrade,"
		echo "$LL_CONNECTIONS idle clients (bench/holdconns.c) connect to the serving generation"
		echo "and stay. Latency: request to the new generation serving, as \`batonctl upgrade\`"
		echo "returns. *serialised* waits, as every upgrade did before generations overlapped,"
		echo "until the old generation is gone (\`--wait-drain\`): here its drain-timeout,"
		echo "since its clients never leave; *overlapping* returns once the new one is ready."
		echo
		echo "| mode | upgrades ok | median ms | max ms | all $LL_UPGRADES upgrades ms |"
		echo "|---|---|---|---|---|"
		for m in serialised overlapping; do
			l=$tmp/ll-$m.log
			[ -s "$l" ] || continue
			echo "| $m | $(awk '$3 == 0' "$l" | wc -l)/$(wc -l <"$l")" \
				"| $(awk '{print $2 / 1000}' "$l" | pct 50) | $(awk '{print $2 / 1000}' "$l" | pct 100)" \
				"| $(awk '{s += $2} END {printf "%.1f", s / 1000}' "$l") |"
		done
		echo
	fi
	cat "$tmp/reexec.md"
	echo "![throughput per 100 ms](throughput.png)"
	echo
	echo "Command: \`make bench\` (bench/run.sh $1). Raw data (loadgen's JSON with the 100 ms"
	echo "timeline, upgrade and start-up logs, batonctl's output): \`$1/bench/data/\`."
} >"$report"

# The raw data (loadgen's JSON with its timeline, upgrade and start-up logs) beside the report.
rm -rf "$out/data"
mkdir -p "$out/data"
cp "$tmp"/*.json "$tmp"/*.log "$tmp"/*.out "$out/data/" 2>/dev/null || true

# ---- the plot ------------------------------------------------------------------------
plot_cmds=()
marks=()
i=0
for s in $SCENARIOS; do
	j=$tmp/$s.json
	[ -s "$j" ] || continue
	i=$((i + 1))
	case $s in
	baseline) colour='#000000' ;;
	naive) colour='#d62728' ;;
	reuseport) colour='#ff7f0e' ;;
	inherit) colour='#1f77b4' ;;
	dispatch) colour='#2ca02c' ;;
	esac
	# whole 100 ms buckets only: the last one, past the duration, is partial
	sed -n 's/.*"timeline":\[\([0-9,]*\)\].*/\1/p' "$j" | tr ',' '\n' |
		awk -v n=$((DURATION_MS / 100)) 'NR <= n {printf "%.2f %d\n", (NR - 1) * 0.1 + 0.05, $1 * 10}' \
			>"$tmp/plot-$s.dat"
	plot_cmds+=("'$tmp/plot-$s.dat' using 1:2 with lines lw 1.2 lc rgb '$colour' title '$s'")
	if [ -s "$tmp/upgrades-$s.log" ]; then
		awk -v k="$i" -v t0="$(jnum "$j" start_mono_us)" \
			'{printf "%.3f %d\n", (t0 ? ($5 - t0) / 1000 : $2) / 1000, -1500 * k}' "$tmp/upgrades-$s.log" \
			>"$tmp/marks-$s.dat"
		marks+=("'$tmp/marks-$s.dat' using 1:2 with points pt 9 ps 0.6 lc rgb '$colour' notitle")
	fi
done
plot=$(printf '%s, ' "${plot_cmds[@]}" "${marks[@]}")
zoom_from=$(((FIRST_MS + 10 * SPACING_MS) / 1000))
[ $((zoom_from + 3)) -le $((DURATION_MS / 1000)) ] || zoom_from=0
gnuplot <<EOF
set terminal pngcairo size 1600,1000 font ",11"
set output '$out/throughput.png'
set multiplot layout 2,1
set xlabel "seconds since the load started"
set ylabel "requests/s"
set grid
set key outside right top
set yrange [-1500 * ($i + 1):*]
set title "Completed requests per second (100 ms buckets), $UPGRADES upgrades every $SPACING_MS ms; triangles below 0: upgrade starts"
set xrange [0:$DURATION_MS / 1000.0]
plot ${plot%, }
set title "The same, seconds $zoom_from to $((zoom_from + 3))"
set xrange [$zoom_from:$((zoom_from + 3))]
replot
unset multiplot
EOF

say "wrote $report and $out/throughput.png in $(($(date +%s) - t_begin)) s"
cat "$report"

#!/bin/bash
# SPDX-License-Identifier: MIT
# `make bench-scale`: live-connection handoff at scale. For N connections (1,000, 10,000,
# 100,000), the serving generation of bench/handoffsrv (inherit mode) holds N established
# connections, each with 16 bytes of state; `batonctl upgrade` starts the next generation,
# the old one parks them all (baton_park_many) on DRAIN and the new one adopts them; then
# every connection is used once more and must answer with its count carried over
# (bench/handoff). Writes BUILD_DIR/bench/scale-report.md. Usage: bench/scale.sh BUILD_DIR
# Env: BENCH_SCALE_SIZES ("1000 10000 100000"), BENCH_SCALE_ROUNDS (3).
#
# Every process stays within RLIMIT_NOFILE (raised to its hard limit; batond takes what it
# holds to half of it): the old and the new generation have as many workers, and the clients
# as many processes, as N needs at a quarter of the limit each (dispatch mode places the
# connections about evenly). perf (tracepoints) counts batond's syscalls; without it those
# columns say "-".
set -euo pipefail

SIZES=${BENCH_SCALE_SIZES:-1000 10000 100000}
ROUNDS=${BENCH_SCALE_ROUNDS:-3}

say() { printf 'bench-scale: %s\n' "$*" >&2; }
die() {
	printf 'bench-scale: %s\n' "$*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
[ -d "$1" ] || die "build directory $1: not found (run: make build)"
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/bench
batond=$build/supervisor/batond
batonctl=$build/supervisor/batonctl
for b in "$batond" "$batonctl" "$bin/handoff" "$bin/handoffsrv" "$bin/fdpass"; do
	[ -x "$b" ] || die "$b: not built (run: make build)"
done
out=$build/bench
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-scale.XXXXXX")
case $tmp$bin in
*' '* | *'"'* | *\\* | *'$'*) die "$tmp or $bin: spaces, quotes, \\ or \$ in the path" ;;
esac
batond_pid='' perf_pid=''
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	[ -z "$perf_pid" ] || kill -INT "$perf_pid" 2>/dev/null || true
	if [ -n "$batond_pid" ] && kill -0 "$batond_pid" 2>/dev/null; then
		kill -TERM "$batond_pid" 2>/dev/null || true
		wait "$batond_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
t_begin=$(date +%s)

free_port() {
	local p hex
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		hex=$(printf '%04X' "$p")
		grep -qs ":$hex " /proc/net/tcp /proc/net/tcp6 || {
			echo "$p"
			return
		}
	done
	die "no free port found"
}

ulimit -Sn "$(ulimit -Hn)"
limit=$(ulimit -Sn)
[ "$limit" = unlimited ] && limit=1048576
# A quarter of the limit: the next generation's workers get unequal shares (a worker
# whose channel is full is passed over), up to 2.9 times the mean seen here under load;
# a worker past its limit loses what it cannot receive (handoff's dropped_messages).
per_process=$((limit / 4))
[ "$per_process" -le 25000 ] || per_process=25000
say "RLIMIT_NOFILE $limit: at most $per_process connections per worker and per client process"

perf_ok=0
if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_close -- true >/dev/null 2>&1; then
	perf_ok=1
else
	say "perf with syscall tracepoints is not available here: no syscall counts"
fi

say "raw SCM_RIGHTS (bench/fdpass, 5 rounds of 200 ms)"
"$bin/fdpass" --ms 200 --rounds 5 >"$tmp/fdpass.out"
sed 's/^/  /' "$tmp/fdpass.out" >&2
raw253=$(sed -n 's/^fdpass: fds=253 .*raw_fds_per_s=\([0-9]*\).*/\1/p' "$tmp/fdpass.out")

# round N R: one upgrade with N connections; its figures go to result-N-R.
round() {
	local n=$1 r=$2 port sock=$tmp/batond.sock stats=$tmp/stats-$1-$2 conf=$tmp/scale-$1.conf
	local workers=$(((n + per_process - 1) / per_process))
	port=$(free_port)
	head -c 16384 /dev/zero >"$stats" # bench/handoff.h: HANDOFF_STATS_BYTES
	cat >"$conf" <<EOF
control { socket = "$sock" }
listener http { address = "tcp://127.0.0.1:$port" }
app bench {
	exec = { "$bin/handoffsrv", "--stats", "$stats" }
	listeners = { "http" }
	mode = dispatch
	workers = $workers
	hold-max = $n
	limit-nofile = $limit
	ready-timeout = 30
	drain-timeout = 60
}
EOF
	"$batond" -c "$conf" >"$tmp/batond-$n-$r.log" 2>&1 &
	batond_pid=$!
	for _ in $(seq 500); do
		"$batonctl" -s "$sock" status --check >/dev/null 2>&1 && break
		kill -0 "$batond_pid" 2>/dev/null || die "batond did not start: $(cat "$tmp/batond-$n-$r.log")"
		sleep 0.02
	done
	# perf counts batond's syscalls from the upgrade on (enabled through its control
	# fifo by the upgrade command), not those of the clients' connecting before.
	local upgrade=$tmp/upgrade.sh
	if [ "$perf_ok" = 1 ]; then
		rm -f "$tmp/perf.ctl" "$tmp/perf.ack"
		mkfifo "$tmp/perf.ctl" "$tmp/perf.ack"
		perf stat --no-inherit -x, -o "$tmp/perf-$n-$r.csv" -p "$batond_pid" -D -1 \
			--control "fifo:$tmp/perf.ctl,$tmp/perf.ack" \
			-e raw_syscalls:sys_enter \
			-e syscalls:sys_exit_recvmsg --filter 'ret > 0' \
			-e syscalls:sys_exit_sendmsg --filter 'ret > 0' \
			-e syscalls:sys_enter_close -e syscalls:sys_enter_close_range \
			-e syscalls:sys_enter_epoll_wait 2>/dev/null &
		perf_pid=$!
		exec 8>"$tmp/perf.ctl" 9<"$tmp/perf.ack"
		printf '#!/bin/sh\necho enable >&8 && read -r ack <&9\nexec %s -s %s upgrade bench\n' \
			"$batonctl" "$sock" >"$upgrade"
		printf '#!/bin/sh\necho disable >&8 && read -r ack <&9\n' >"$tmp/adopted.sh"
	else
		: >"$tmp/adopted.sh"
		printf '#!/bin/sh\nexec %s -s %s upgrade bench\n' "$batonctl" "$sock" >"$upgrade"
	fi
	local rss0
	rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$batond_pid/status")
	"$bin/handoff" --port "$port" --connections "$n" --upgrade "sh $upgrade" --adopted "sh $tmp/adopted.sh" \
		--stats "$stats" --per-process "$per_process" --timeout-ms 120000 \
		>"$tmp/handoff-$n-$r.out" 2>"$tmp/handoff-$n-$r.err" || true
	local hwm fdsize
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$batond_pid/status")
	fdsize=$(awk '/^FDSize/ {print $2}' "/proc/$batond_pid/status")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
		perf_pid=
		exec 8>&- 9<&-
	fi
	"$batonctl" -s "$sock" stop >/dev/null 2>&1 || true
	for _ in $(seq 1500); do
		kill -0 "$batond_pid" 2>/dev/null || break
		sleep 0.02
	done
	kill -KILL "$batond_pid" 2>/dev/null || true
	wait "$batond_pid" 2>/dev/null || true
	batond_pid=
	local res=$tmp/handoff-$n-$r.out
	v() { sed -n "s/.* $1=\([-0-9.]*\).*/\1/p" "$res" | grep . || echo -; }
	local pk sys=- rcv=- snd=- cls=- clr=- epw=-
	pk=$tmp/perf-$n-$r.csv
	if [ -s "$pk" ]; then
		sys=$(awk -F, '$3 ~ /raw_syscalls:sys_enter/ {print $1}' "$pk")
		rcv=$(awk -F, '$3 ~ /sys_exit_recvmsg/ {print $1}' "$pk")
		snd=$(awk -F, '$3 ~ /sys_exit_sendmsg/ {print $1}' "$pk")
		cls=$(awk -F, '$3 ~ /sys_enter_close$/ {print $1}' "$pk")
		clr=$(awk -F, '$3 ~ /sys_enter_close_range/ {print $1}' "$pk")
		epw=$(awk -F, '$3 ~ /sys_enter_epoll_wait/ {print $1}' "$pk")
	fi
	echo "$n $r $(v handoff_ms) $(v ok) $(v lost) $(v wrong) $(v unanswered)" \
		"$((hwm / 1024)) $((rss0 / 1024)) $fdsize $sys $rcv $snd $cls $clr $epw" \
		"$(v upgrade_ms) $(v park_ms) $workers $(v most_adopted) $(v dropped_messages)" >"$tmp/result-$n-$r"
	say "  $n connections, round $r: $(cat "$tmp/handoff-$n-$r.out" "$tmp/handoff-$n-$r.err" | tr '\n' ' ')"
	say "    $(cat "$tmp/result-$n-$r")"
}

for n in $SIZES; do
	say "$n connections, $ROUNDS rounds"
	for r in $(seq "$ROUNDS"); do
		round "$n" "$r"
	done
done

# ---- the report ---------------------------------------------------------------------
pct() { sort -n | awk -v k="$1" '{v[NR]=$1} END {if (!NR) {print "-"; exit} i=int((k*NR+99)/100); if (i<1) i=1; print v[i]}'; }
report=$out/scale-report.md
{
	echo "# baton: live-connection handoff at scale"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'); Linux $(uname -r), $(nproc) CPUs," \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load average" \
		"$(cut -d' ' -f1-3 /proc/loadavg) at the end. RLIMIT_NOFILE $limit."
	echo
	echo "| connections | workers per generation | rounds | handoff median ms | min | max | ok | lost | wrong | unanswered | most on one new worker | messages a worker dropped | batond peak RSS MiB (at start) | batond fd table (FDSize) | batond syscalls | per 1,000 connections | recvmsg | sendmsg | connections per sendmsg | close | close_range | epoll_wait | old workers' park_many ms | upgrade (batonctl) ms |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for n in $SIZES; do
		ls "$tmp"/result-"$n"-* >/dev/null 2>&1 || continue
		cat "$tmp"/result-"$n"-* >"$tmp/all-$n"
		med() { awk -v c="$1" '{print $c}' "$tmp/all-$n" | grep -v '^-$' | pct "${2:-50}"; }
		sum() { awk -v c="$1" '$c != "-" {s += $c} END {print s + 0}' "$tmp/all-$n"; }
		sys=$(med 11) snd=$(med 13)
		echo "| $n | $(med 19) | $(wc -l <"$tmp/all-$n") | $(med 3) | $(med 3 1) | $(med 3 100)" \
			"| $(sum 4) | $(sum 5) | $(sum 6) | $(sum 7) | $(med 20 100) | $(sum 21)" \
			"| $(med 8 100) ($(med 9)) | $(med 10 100)" \
			"| $sys | $(awk -v s="$sys" -v n="$n" 'BEGIN {if (s == "-") print "-"; else printf "%.1f", s * 1000 / n}')" \
			"| $(med 12) | $snd | $(awk -v s="$snd" -v n="$n" 'BEGIN {if (s == "-" || s == 0) print "-"; else printf "%.0f", n / s}')" \
			"| $(med 14) | $(med 15) | $(med 16) | $(med 18) | $(med 17) |"
	done
	echo
	echo "Raw SCM_RIGHTS in the same run (bench/fdpass: one thread sends 253 fds in a message"
	echo "over an AF_UNIX SOCK_SEQPACKET socketpair, receives them and closes them): $raw253 fds/s,"
	echo "so one hop of 100,000 fds takes $(awk -v r="$raw253" 'BEGIN {printf "%.1f", 1e5 / r * 1000}') ms of one CPU;"
	echo "a handoff is two hops (the old worker to batond, batond to the new worker)."
	echo
	echo "Command: \`make bench-scale\` (bench/scale.sh $1); raw data in \`$1/bench/scale-data/\`."
} >"$report"
rm -rf "$out/scale-data"
mkdir -p "$out/scale-data"
cp "$tmp"/*.log "$tmp"/*.out "$tmp"/*.err "$tmp"/*.csv "$tmp"/result-* "$out/scale-data/" 2>/dev/null || true
say "wrote $report in $(($(date +%s) - t_begin)) s"
cat "$report"

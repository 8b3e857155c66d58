#!/bin/bash
# SPDX-License-Identifier: MIT
# batond under a real systemd (252 on Debian 12), booted in private pid, mount,
# uts and ipc namespaces: the shipped units/batond.service with a test drop-in,
# Type=notify start and STATUS, reload under load, kill -9 under load with the
# listener coming back from the fd store, the watchdog, and socket activation.
# Usage: run.sh BUILD_DIR SOURCE_DIR. Exits 77 (skipped) where systemd cannot boot,
# saying why; with BATON_REQUIRE_SYSTEMD=1, as root where /lib/systemd/systemd
# exists, such a skip is a failure (exit 1) instead.
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$build/tests/systemd/work
batond=$build/supervisor/batond
batonctl=$build/supervisor/batonctl
testsrv=$build/tests/apps/testsrv
loadgen=$build/bench/loadgen

NS_TEST=systemd-test
in_ns() { nsenter -t "$sd" -m -p -- "$@"; }
# shellcheck source=../lib/nsboot.sh
. "$src/tests/lib/nsboot.sh"
[ "$(id -u)" -eq 0 ] || skip "needs root to boot systemd in namespaces"
[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd"
command -v unshare >/dev/null && command -v nsenter >/dev/null || skip "no unshare/nsenter"
command -v ss >/dev/null || skip "no ss (iproute2)"
command -v python3 >/dev/null || skip "no python3"
# boot.sh keeps the build directory on the namespace's fresh /run while it
# replaces /tmp, /var/tmp and /etc/systemd/system: it cannot come from there.
for d in /run /etc/systemd/system; do
	case $build/ in "$d"/*) skip "build directory $build is under $d, which the namespace replaces" ;; esac
done

rm -rf "$work"
mkdir -p "$work/units/batond.service.d" "$work/units/batond.socket.d"
lg=

say() { printf 'systemd-test: %s\n' "$*"; }
fail() {
	printf 'systemd-test: FAIL: %s\n' "$*" >&2
	[ -f "$work/batond.log" ] && { echo "--- batond log" >&2; tail -40 "$work/batond.log" >&2; }
	[ -f "$work/systemd.log" ] && { echo "--- systemd log" >&2; tail -30 "$work/systemd.log" >&2; }
	[ -n "$sd" ] && { echo "--- systemctl status" >&2; sctl status --no-pager batond.service >&2 || true; }
	exit 1
}
# PID 1 ignores SIGTERM: SIGKILL to it ends everything in the namespace.
cleanup() {
	if [ -n "$lg" ]; then kill -KILL "$lg" 2>/dev/null || true; fi
	if [ -n "$sd" ]; then kill -KILL "$sd" 2>/dev/null || true; fi
	if [ -n "$unshare_pid" ]; then wait "$unshare_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# The inode of the socket listening on 127.0.0.1:$1, as the kernel reports it.
listener_inode() { ss -Htlne "sport = :$1" | sed -n 's/.*ino:\([0-9]*\).*/\1/p' | head -1; }
# The inode of batond's own fd for listener http (batonctl status names the fd).
batond_inode() {
	local fd main
	fd=$("$batonctl" -s "$work/ctl.sock" status | sed -n 's/^listener http: .*, fd \([0-9]*\).*/\1/p')
	main=$(prop batond.service MainPID)
	in_ns readlink "/proc/$main/fd/$fd" | sed -n 's/socket:\[\([0-9]*\)\]/\1/p'
}
loadgen_field() { sed -n "s/^loadgen: \(.* \)*$2=\([^ ]*\).*/\2/p" "$1"; }
serving_gen() { "$batonctl" -s "$work/ctl.sock" status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["apps"][0]["serving"])'; }
# The CPU time (ns) used so far by the workers of web's serving generation.
# Idle, testsrv sleeps in epoll_wait: the sum grows only when connections come.
# Read in the namespace, whose pids batonctl reports.
serving_cpu_ns() {
	"$batonctl" -s "$work/ctl.sock" status --json | in_ns python3 -c '
import json, sys
app = json.load(sys.stdin)["apps"][0]
pids = [w["pid"] for g in app["generations"] if g["id"] == app["serving"]
        for w in g["workers"] if w["pid"] > 0]
if not pids:
    sys.exit("no worker serving")
print(sum(int(open("/proc/%d/schedstat" % pid).read().split()[0]) for pid in pids))'
}
# serving_gen_gets_load NS: the serving generation has used more CPU than NS,
# a serving_cpu_ns of before: the load reaches it.
serving_gen_gets_load() {
	local ns
	ns=$(serving_cpu_ns) && [ "$ns" -gt "$1" ]
}
# Load that lasts as long as the events it covers: --duration-ms is a ceiling
# against hangs only. loadgen_start returns once the load reaches the serving
# generation (by then loadgen has blocked SIGTERM, which it takes as "stop");
# loadgen_stop ends the run, requests in flight finish, and loadgen prints its
# report and exits 0 if none failed and at least one succeeded.
loadgen_start() {
	local idle_ns
	idle_ns=$(serving_cpu_ns) || fail "no serving generation before the load"
	"$loadgen" --port "$port" --connections 4 --duration-ms 120000 >"$1" 2>&1 &
	lg=$!
	wait_for 30 serving_gen_gets_load "$idle_ns" ||
		fail "the load does not reach generation $(serving_gen): $(cat "$1")"
}
loadgen_stop() {
	local rc=0
	kill -TERM "$lg"
	wait "$lg" || rc=$?
	lg=
	return "$rc"
}

port=$(free_port)
port2=$(free_port)
# "spare" is bound and stored too; step 3b removes it from the configuration.
write_conf() {
	cat >"$work/batond.conf" <<EOF
control { socket = "$work/ctl.sock" }
listener http { address = "tcp://127.0.0.1:$port" }
$1
app web {
  exec = { "$testsrv" }
  listeners = { "http" }
  workers = ${workers:-2}
  drain-timeout = 5
}
EOF
}
write_conf "listener spare { address = \"tcp://127.0.0.1:$port2\" }"

# The shipped unit, with test paths and no default dependencies: without them
# systemd starts nothing of sysinit.target (tmpfiles, sysctl, udev) next to us.
cp "$build/units/batond.service" "$work/units/"
sed "s/127.0.0.1:8080/127.0.0.1:$port/" "$src/units/batond.socket" >"$work/units/batond.socket"
cat >"$work/units/batond.service.d/test.conf" <<EOF
[Unit]
DefaultDependencies=no
# Five crashes and restarts in a few seconds here: no start limit in the test.
StartLimitIntervalSec=0
[Service]
ExecStartPre=
ExecStartPre=$batond --check -c $work/batond.conf
ExecStart=
ExecStart=$batond -c $work/batond.conf
ExecReload=
ExecReload=$batonctl -s $work/ctl.sock upgrade
StandardOutput=append:$work/batond.log
StandardError=append:$work/batond.log
# The shipped sandbox hides /tmp (PrivateTmp=) and makes homes read-only
# (ProtectHome=): the build directory, wherever it is, is seen as it is on the
# host, read-only, with $work (control socket) writable.
BindReadOnlyPaths=$build
BindPaths=$work
EOF
printf '[Unit]\nDefaultDependencies=no\n' >"$work/units/batond.socket.d/test.conf"
printf '[Unit]\nDescription=baton test\nDefaultDependencies=no\n' >"$work/units/baton-test.target"

# Inside the namespaces: fresh tmpfs where a booting systemd writes or cleans
# (it would otherwise empty the host's /tmp), the test units, then systemd.
# The build directory (batond, the units, $work) may be under one of them, as
# in a clone under /tmp: bound onto the new /run before the others hide it, it
# is moved back onto its own path on top of them. A bind mount shares the
# files, so every path here and in the units means the same file inside the
# namespace as outside, where this script keeps using them.
cat >"$work/boot.sh" <<EOF
#!/bin/sh
set -e
mount -t tmpfs tmpfs /run
mkdir /run/baton-build
mount --bind "$build" /run/baton-build
for d in /tmp /var/tmp /etc/systemd/system; do mount -t tmpfs tmpfs "\$d"; done
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p "$build"
mount --move /run/baton-build "$build"
rmdir /run/baton-build
cp -r "$work/units/." /etc/systemd/system/
# As in a container: systemd leaves the host's hardware and settings alone.
export container=baton-test
exec /lib/systemd/systemd --system --unit=baton-test.target --show-status=no
EOF
chmod +x "$work/boot.sh"
ns_boot "$work/boot.sh" "$work/systemd.log"
say "systemd booted in a namespace (pid $sd)"

# 1. Type=notify: start returns once every app's first generation is ready.
sctl start batond.service || fail "systemctl start batond failed"
[ "$(prop batond.service ActiveState)" = active ] || fail "batond is not active"
status=$(prop batond.service StatusText)
[[ $status == "web: gen 1 ready, 2 workers, 0 upgrades, 0 rolled back" ]] ||
	fail "unexpected Status: $status"
say "start: active, Status: $status"

# 2. systemctl reload under load: a new generation, no request failed.
inode=$(listener_inode "$port")
[ -n "$inode" ] && [ "$inode" = "$(batond_inode)" ] || fail "batond does not hold the listener"
loadgen_start "$work/reload.out"
# Synchronous: generation 1 is gone when reload returns, and from then on
# every request of the load is generation 2's.
sctl reload batond.service || fail "systemctl reload failed"
[ "$(serving_gen)" = 2 ] || fail "generation $(serving_gen) serves after the reload"
ns=$(serving_cpu_ns) || fail "no workers of generation 2"
wait_for 30 serving_gen_gets_load "$ns" || fail "the load does not reach generation 2"
loadgen_stop || fail "requests failed during reload: $(grep '^loadgen:' "$work/reload.out")"
grep -q 'gens=1:[0-9]*,2:' "$work/reload.out" || fail "generation 2 served nothing"
status=$(prop batond.service StatusText)
[[ $status == "web: gen 2 ready, 2 workers, 1 upgrade, 0 rolled back" ]] ||
	fail "unexpected Status after reload: $status"
say "reload under load: $(grep '^loadgen:' "$work/reload.out" | cut -d' ' -f2-4)"

# 2b. batond re-execs itself under load: the same MainPID, the unit active and
# the same workers throughout, no request failed.
worker_pids() { "$batonctl" -s "$work/ctl.sock" status --json | python3 -c '
import json, sys
print(" ".join(str(w["pid"]) for g in json.load(sys.stdin)["apps"][0]["generations"] for w in g["workers"]))'; }
main=$(prop batond.service MainPID)
pids=$(worker_pids)
loadgen_start "$work/reexec.out"
for n in 1 2 3; do
	out=$("$batonctl" -s "$work/ctl.sock" reexec) || fail "reexec $n: $out"
	[ "$(prop batond.service MainPID)" = "$main" ] || fail "MainPID changed with reexec $n"
	[ "$(prop batond.service ActiveState)" = active ] || fail "unit not active after reexec $n"
done
loadgen_stop || fail "requests failed during the re-execs: $(grep '^loadgen:' "$work/reexec.out")"
[ "$(worker_pids)" = "$pids" ] || fail "workers changed with the re-execs: $pids, now $(worker_pids)"
say "re-exec under load: MainPID $main kept, $(grep '^loadgen:' "$work/reexec.out" | cut -d' ' -f2-4)"

# 2c. systemctl reload applies a change of the configuration (3 workers).
workers=3 write_conf "listener spare { address = \"tcp://127.0.0.1:$port2\" }"
sctl reload batond.service || fail "systemctl reload failed"
n=$("$batonctl" -s "$work/ctl.sock" status --json | python3 -c '
import json, sys
app = json.load(sys.stdin)["apps"][0]
print(sum(1 for g in app["generations"] if g["id"] == app["serving"] for w in g["workers"] if w["state"] == "ready"))')
[ "$n" = 3 ] || fail "$n workers ready after a reload to 3"
say "systemctl reload: the new configuration's 3 workers serve"

# 3. kill -9 of batond under load: systemd restarts it, the listener comes back
# from the fd store (same socket), no connection is refused.
main=$(prop batond.service MainPID)
loadgen_start "$work/kill.out"
sctl kill -s KILL --kill-who=main batond.service
restarted() { [ "$(prop batond.service NRestarts)" = 1 ] && [ "$(prop batond.service ActiveState)" = active ]; }
wait_for 30 restarted || fail "batond was not restarted"
[ "$(prop batond.service MainPID)" != "$main" ] || fail "same MainPID after kill -9"
ns=$(serving_cpu_ns) || fail "the restarted batond has no workers"
wait_for 30 serving_gen_gets_load "$ns" || fail "the load does not reach the restarted batond's workers"
# The requests the SIGKILLed workers had in hand fail: no status to check.
loadgen_stop || true
refused=$(loadgen_field "$work/kill.out" refused)
[ "$refused" = 0 ] || fail "connections refused while batond restarted: $(grep '^loadgen:' "$work/kill.out")"
[ "$(loadgen_field "$work/kill.out" ok)" -gt 0 ] || fail "no request succeeded: $(grep '^loadgen:' "$work/kill.out")"
[ "$(listener_inode "$port")" = "$inode" ] || fail "the listener is a new socket after the restart"
[ "$(batond_inode)" = "$inode" ] || fail "the restarted batond does not hold the stored listener"
grep -q "listener http: tcp://127.0.0.1:$port, fd [0-9]* from systemd" "$work/batond.log" ||
	fail "the restarted batond did not adopt the listener from the fd store"
say "kill -9 under load: $(grep '^loadgen:' "$work/kill.out" | cut -d' ' -f2-9), same listener inode $inode"

# 3b. A stored listener the configuration no longer has: after the next crash
# batond closes it and takes it out of the store (FDSTOREREMOVE=1), so nobody
# holds the port any more, and the crash after that does not bring it back.
[ -n "$(listener_inode "$port2")" ] || fail "listener spare is not bound"
write_conf ""
for n in 2 3; do
	main=$(prop batond.service MainPID)
	sctl kill -s KILL --kill-who=main batond.service
	restarted_n() { [ "$(prop batond.service NRestarts)" = "$n" ] && [ "$(prop batond.service ActiveState)" = active ]; }
	wait_for 30 restarted_n || fail "batond was not restarted ($n)"
	[ "$(prop batond.service MainPID)" != "$main" ] || fail "same MainPID after kill -9 ($n)"
	port2_closed() { [ -z "$(listener_inode "$port2")" ]; }
	wait_for 30 port2_closed || fail "port $port2 still listening: the stored fd of the removed listener was kept"
done
[ "$(grep -c 'no listener named "spare"' "$work/batond.log")" = 1 ] ||
	fail "the removed listener was not passed back exactly once (FDSTOREREMOVE)"
[ "$(batond_inode)" = "$inode" ] || fail "listener http lost from the fd store"
say "fd store: the listener removed from the configuration was closed and dropped from the store"

# 4. Watchdog: a batond whose loop is stuck (stopped) is restarted.
printf '[Service]\nWatchdogSec=1\nTimeoutAbortSec=1\nRestartSec=1\n' >"$work/watchdog.conf"
in_ns cp "$work/watchdog.conf" /etc/systemd/system/batond.service.d/watchdog.conf
sctl daemon-reload
sctl restart batond.service
restarts=$(prop batond.service NRestarts)
sctl kill -s STOP --kill-who=main batond.service
# Result stays "watchdog" from the timeout until the restart, RestartSec=1 later.
watchdog_fired() { [ "$(prop batond.service Result)" = watchdog ]; }
wait_for 20 watchdog_fired || fail "the watchdog did not fire for a stuck batond: $(sctl show -p Result -p NRestarts -p ActiveState -p SubState batond.service | tr '\n' ' ')"
restarted_again() { [ "$(prop batond.service NRestarts)" -gt "$restarts" ] && [ "$(prop batond.service ActiveState)" = active ]; }
wait_for 20 restarted_again || fail "a stuck batond was not restarted"
say "watchdog: a stuck batond timed out (Result=watchdog) and was restarted"

# 5. Socket activation: batond adopts the socket unit's socket, by name.
sctl stop batond.service
in_ns rm /etc/systemd/system/batond.service.d/watchdog.conf
sctl daemon-reload
sctl start batond.socket || fail "systemctl start batond.socket failed"
inode=$(listener_inode "$port")
# systemd's own fd (PID 1 in the namespace) for the socket unit's socket.
grep -q "socket:\\[$inode\\]" <<<"$(in_ns ls -l /proc/1/fd)" || fail "systemd does not hold socket $inode"
sctl start batond.service || fail "batond did not start with the socket unit"
[ "$(batond_inode)" = "$inode" ] || fail "batond does not hold the socket unit's socket"
grep -q "^listener http: .*, from systemd" <<<"$("$batonctl" -s "$work/ctl.sock" status)" ||
	fail "status does not say the listener came from systemd"
grep -q "gen=1 " <<<"$(curl -sf "http://127.0.0.1:$port/")" || fail "no answer through the socket unit's socket"
say "socket activation: batond adopted inode $inode from batond.socket"

sctl stop batond.service batond.socket

# 6. Delegate=yes: batond in a leaf of its own, each generation in a cgroup of
# its own with the app's memory-max, and a daemon a worker double-forked
# (setsid: out of its process group) dies when its generation drains.
cat >"$work/daemonizing.sh" <<EOF
#!/bin/sh
( setsid sleep 600 </dev/null >/dev/null 2>&1 & echo \$! > $work/daemon.pid )
exec $testsrv
EOF
chmod +x "$work/daemonizing.sh"
cat >"$work/batond.conf" <<EOF
control { socket = "$work/ctl.sock" }
listener http { address = "tcp://127.0.0.1:$port" }
app web {
  exec = { "$work/daemonizing.sh" }
  listeners = { "http" }
  workers = 2
  drain-timeout = 1
  memory-max = 96M
}
EOF
sctl start batond.service || fail "systemctl start batond failed (Delegate=yes)"
unit_cg=$(prop batond.service ControlGroup)
cgmnt=$(in_ns findmnt -n -o TARGET -t cgroup2 | head -1)
[ -n "$cgmnt" ] || fail "no cgroup2 mounted in the namespace"
status_json() { "$batonctl" -s "$work/ctl.sock" status --json; }
cgroups_mode() { status_json | python3 -c 'import json, sys; print(json.load(sys.stdin)["cgroups"])'; }
cgroup_of() { in_ns sed -n 's/^0:://p' "/proc/$1/cgroup"; }
mode=$(cgroups_mode)
[[ $mode == "cgroup2 $cgmnt$unit_cg (delegated), limits: "*memory* ]] || fail "cgroups in status: $mode"
main=$(prop batond.service MainPID)
[ "$(cgroup_of "$main")" = "$unit_cg/supervisor" ] ||
	fail "batond is in $(cgroup_of "$main"), not in $unit_cg/supervisor"
# gen_workers_in_cgroups G: both workers of generation G in their cgroups.
gen_workers_in_cgroups() {
	local pid i=0
	for pid in $(status_json | python3 -c "import json, sys; a = json.load(sys.stdin)['apps'][0]; print(' '.join(str(w['pid']) for g in a['generations'] if g['id'] == $1 for w in g['workers']))"); do
		[ "$(cgroup_of "$pid")" = "$unit_cg/app-web/gen-$1/worker-$i" ] || return 1
		i=$((i + 1))
	done
	[ "$i" = 2 ]
}
gen_workers_in_cgroups 1 || fail "the workers of generation 1 are not in $unit_cg/app-web/gen-1/worker-N"
# memory-max: cgroup2's memory.max, or cgroup v1's memory.limit_in_bytes in a hybrid layout.
w0=$(status_json | python3 -c 'import json, sys; print(json.load(sys.stdin)["apps"][0]["generations"][0]["workers"][0]["pid"])')
if [[ $mode == *"memory (v1)"* ]]; then
	v1=$(in_ns sed -n 's/^[0-9]*:memory://p' "/proc/$w0/cgroup")
	limit=$(in_ns cat "/sys/fs/cgroup/memory${v1%/gen-1}/memory.limit_in_bytes")
else
	limit=$(in_ns cat "$cgmnt$unit_cg/app-web/memory.max")
fi
[ "$limit" = $((96 * 1024 * 1024)) ] || fail "memory-max 96M is $limit in the app's cgroup"
memory=$(status_json | python3 -c 'import json, sys; print(json.load(sys.stdin)["apps"][0]["generations"][0].get("memory_bytes", 0))')
[ "$memory" -gt 0 ] || fail "status has no memory_bytes for generation 1"
grep -q "generation 1: serving, .*, cgroup app-web/gen-1: memory " <<<"$("$batonctl" -s "$work/ctl.sock" status)" ||
	fail "batonctl status shows no cgroup for generation 1"
daemon=$(cat "$work/daemon.pid")
in_ns kill -0 "$daemon" || fail "the daemon of generation 1 is not running"
sctl reload batond.service || fail "systemctl reload failed (Delegate=yes)"
gen_workers_in_cgroups 2 || fail "the workers of generation 2 are not in $unit_cg/app-web/gen-2/worker-N"
# The reload returns once generation 2 is ready; generation 1 drains on, and
# is gone once its cgroup is empty: its daemon killed at drain-timeout.
gen1_gone() { ! in_ns test -e "$cgmnt$unit_cg/app-web/gen-1"; }
wait_for 30 gen1_gone || fail "generation 1's cgroup is still there"
! in_ns kill -0 "$daemon" 2>/dev/null || fail "the daemon generation 1's worker double-forked survived its generation"
grep -q "processes of its cgroup still running after drain-timeout, killing them (cgroup.kill)" "$work/batond.log" ||
	fail "no cgroup.kill at drain-timeout in batond's log"
say "Delegate=yes: $mode; generations in $unit_cg/app-web/gen-N, memory-max $limit, the double-forked daemon died with generation 1"

# 7. Without Delegate=: process groups, and batond says so once.
printf '[Service]\nDelegate=no\n' >"$work/nodelegate.conf"
in_ns cp "$work/nodelegate.conf" /etc/systemd/system/batond.service.d/nodelegate.conf
sctl daemon-reload
sctl restart batond.service || fail "systemctl restart batond failed (Delegate=no)"
mode=$(cgroups_mode)
[ "$mode" = "none (process groups)" ] || fail "cgroups without Delegate=: $mode"
main=$(prop batond.service MainPID)
[ "$(grep -c "batond\[$main\].*cgroups: none used, workers are tracked by process group: batond's cgroup $cgmnt$unit_cg is not delegated to it (Delegate=yes)" "$work/batond.log")" = 1 ] ||
	fail "batond did not say once that it has no delegated cgroup"
sctl reload batond.service || fail "systemctl reload failed (Delegate=no)"
[ "$(serving_gen)" = 2 ] || fail "generation $(serving_gen) serves after the reload (Delegate=no)"
sctl stop batond.service
say "Delegate=no: workers tracked by process group, said once"
say "PASS"

# SPDX-License-Identifier: MIT
# Shared by the tests that boot systemd 252 in private namespaces
# (tests/systemd/run.sh, tests/install/packaging.sh). Sourced, after the test
# has set NS_TEST (its name in messages) and defined in_ns (how to run a command
# inside). Sets unshare_pid and sd (systemd's pid), which cleanup uses.
unshare_pid=
sd=

# Exits 77 (skipped) saying why; with BATON_REQUIRE_SYSTEMD=1, as root where
# /lib/systemd/systemd exists, a skip is a failure (exit 1) instead.
skip() {
	if [ "${BATON_REQUIRE_SYSTEMD:-}" = 1 ] && [ "$(id -u)" -eq 0 ] && [ -x /lib/systemd/systemd ]; then
		echo "$NS_TEST: FAIL: BATON_REQUIRE_SYSTEMD=1 and the test cannot run: $*" >&2
		exit 1
	fi
	echo "SKIPPED: $*"
	exit 77
}

sctl() { in_ns systemctl "$@"; }
prop() { sctl show -p "$2" --value "$1"; }
# running PID: alive, and not a zombie waiting for us to reap it.
running() {
	local state
	state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]
}
# wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ns_boot BOOT_SCRIPT LOG [SKIP_PREFIX]: runs BOOT_SCRIPT (which ends in exec
# systemd) in new pid, mount, uts and ipc namespaces, detached, output to LOG,
# and returns once systemd is running. A boot that cannot happen is a skip that
# says why (unshare's status and the log's last words).
ns_boot() {
	local boot=$1 log=$2 prefix=${3:-}
	setsid unshare --pid --fork --mount --uts --ipc --mount-proc --propagation private \
		"$boot" >"$log" 2>&1 </dev/null &
	unshare_pid=$!
	wait_for 30 ns_started_or_ended || skip "${prefix}unshare started no process in 30 s"
	running "$unshare_pid" || ns_ended "$log" "$prefix"
	wait_for 60 ns_booted_or_ended ||
		skip "${prefix}systemd did not finish booting in 60 s: $(sctl is-system-running 2>&1); jobs: $(sctl list-jobs --no-legend 2>&1 | head -5 | tr -s ' \n' '  ')"
	running "$unshare_pid" || ns_ended "$log" "$prefix"
}
ns_started_or_ended() {
	{ sd=$(pgrep -P "$unshare_pid" | head -1) && [ -n "$sd" ]; } || ! running "$unshare_pid"
}
ns_booted_or_ended() {
	sctl is-system-running | grep -Eq 'running|degraded' || ! running "$unshare_pid"
}
# Why the namespace ended: unshare's status and the last words of the log.
ns_ended() {
	local rc=0
	wait "$unshare_pid" || rc=$?
	unshare_pid=
	sd=
	skip "${2}the namespace ended before systemd booted (unshare: status $rc): $(tail -5 "$1" | tr -s ' \n' '  ')"
}

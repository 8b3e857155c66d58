#!/bin/bash
# SPDX-License-Identifier: MIT
# The Debian packages as a Debian 12 user gets them. Builds batond, libbaton0 and
# libbaton-dev from a scratch copy of the source tree (packaging/build-deb.sh, tests
# skipped), checks that lintian reports no error and that each package holds exactly
# the files it should. Then installs them into a copy-on-write view of this machine
# (an overlay over /, in private namespaces: the host's /usr, /etc and dpkg database
# are never written) where systemd 252 boots, and checks what an administrator would
# see: the group baton, batond.service enabled and started by the package with the
# installed configuration, batonctl answering root and members of baton only, an app
# built against the installed libbaton with pkg-config served, `systemctl reload` a
# new generation, a reinstall that neither restarts batond nor touches the edited
# configuration, and a purge that leaves nothing behind but the administrator's own
# files (dpkg removes the package's conffile on purge, edited or not).
# Usage: packaging.sh BUILD_DIR SOURCE_DIR. Exits 77 (skipped), saying why, where a tool
# is missing or systemd cannot boot; with BATON_REQUIRE_SYSTEMD=1, as root where
# /lib/systemd/systemd exists, a skip of the installation is a failure.
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$build/tests/install/packaging
NS_TEST=packaging-test
in_ns() { nsenter -t "$sd" -m -p --root --wd -- "$@"; }
# shellcheck source=../lib/nsboot.sh
. "$src/tests/lib/nsboot.sh"

say() { printf 'packaging-test: %s\n' "$*"; }
fail() {
	printf 'packaging-test: FAIL: %s\n' "$*" >&2
	if [ -n "$sd" ]; then
		echo "--- systemctl status batond" >&2
		sctl status --no-pager batond.service >&2 || true
		echo "--- journal of batond" >&2
		in_ns journalctl --no-pager -n 30 -u batond.service >&2 || true
	fi
	exit 1
}
# PID 1 ignores SIGTERM: SIGKILL to it ends everything in the namespaces, the
# overlay with it.
cleanup() {
	if [ -n "$sd" ]; then kill -KILL "$sd" 2>/dev/null || true; fi
	if [ -n "$unshare_pid" ]; then wait "$unshare_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

for tool in dpkg-buildpackage dh lintian dpkg-deb dpkg-architecture; do
	command -v "$tool" >/dev/null || skip "no $tool (packaging/deps.sh installs dpkg-dev, debhelper and lintian)"
done
rm -rf "$work"
mkdir -p "$work"

# 1. Build, as a user would with `make deb`: nocheck, make check runs the tests.
start=$SECONDS
DEB_BUILD_OPTIONS=nocheck DEB_BUILD_PROFILES=nocheck "$src/packaging/build-deb.sh" "$work/debs" >/dev/null ||
	fail "the packages do not build"
say "built $(cd "$work/debs" && echo batond_*.deb libbaton0_*.deb libbaton-dev_*.deb) in $((SECONDS - start)) s"

# 2. lintian: no error. Warnings and the rest are listed, not fatal.
lintian --pedantic --display-info "$work"/debs/*.changes >"$work/lintian.txt" 2>&1 || true
grep -q '^E: ' "$work/lintian.txt" && fail "lintian reports errors: $(grep '^E: ' "$work/lintian.txt")"
tags=$(grep -E '^[WIP]: ' "$work/lintian.txt" | sort -u || true)
say "lintian: no error, $(grep -c '^W: ' <<<"$tags" || true) warnings, $(grep -cE '^[IP]: ' <<<"$tags" || true) info/pedantic${tags:+: $(tr '\n' ';' <<<"$tags")}"

# 3. Each package holds exactly these files (dirs aside; compressed or not, as
# dh_compress sees fit).
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
contents() { dpkg-deb -c "$1" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|; s|\.gz$||' | sort; }
expect_contents() {
	local deb=$1
	shift
	diff -u <(printf '%s\n' "$@" | sort) <(contents "$deb") >"$work/contents.diff" ||
		fail "$(basename "$deb") does not hold the expected files (- expected, + found): $(cat "$work/contents.diff")"
}
expect_contents "$work"/debs/batond_*.deb /etc/baton/batond.conf \
	/lib/systemd/system/batond.service /lib/systemd/system/batond@.service /lib/systemd/system/batond.socket \
	/usr/bin/batonctl /usr/sbin/batond /usr/share/bash-completion/completions/batonctl \
	/usr/share/doc/batond/README.md /usr/share/doc/batond/changelog /usr/share/doc/batond/copyright \
	/usr/share/doc/batond/dispatch.md /usr/share/doc/batond/systemd.md \
	/usr/share/doc/batond/examples/batond.conf \
	/usr/share/man/man5/batond.conf.5 /usr/share/man/man8/batonctl.8 /usr/share/man/man8/batond.8
expect_contents "$work"/debs/libbaton0_*.deb "/usr/lib/$arch/libbaton.so.0" "/usr/lib/$arch/libbaton.so.0.1.0" \
	/usr/share/doc/libbaton0/changelog /usr/share/doc/libbaton0/copyright
expect_contents "$work"/debs/libbaton-dev_*.deb /usr/include/baton.h \
	"/usr/lib/$arch/libbaton.so" "/usr/lib/$arch/libbaton.a" "/usr/lib/$arch/pkgconfig/libbaton.pc" \
	"/usr/lib/$arch/cmake/baton/batonConfig.cmake" "/usr/lib/$arch/cmake/baton/batonConfigVersion.cmake" \
	"/usr/lib/$arch/cmake/baton/batonTargets.cmake" "/usr/lib/$arch/cmake/baton/batonTargets-none.cmake" \
	"/usr/lib/$arch/cmake/baton/batonStaticTargets.cmake" \
	"/usr/lib/$arch/cmake/baton/batonStaticTargets-none.cmake" \
	/usr/share/doc/libbaton-dev/changelog /usr/share/doc/libbaton-dev/copyright \
	/usr/share/doc/libbaton-dev/protocol.md /usr/share/man/man3/libbaton.3
conffiles=$(dpkg-deb --ctrl-tarfile "$work"/debs/batond_*.deb | tar -xOf - ./conffiles)
[ "$conffiles" = /etc/baton/batond.conf ] || fail "batond's conffiles are '$conffiles', not /etc/baton/batond.conf"
say "contents: the files expected in each package; /etc/baton/batond.conf is a conffile"

# 4. Installed, in namespaces of their own over a copy-on-write view of this machine.
[ "$(id -u)" -eq 0 ] || skip "packages built and checked; installing them needs root (namespaces, overlay)"
[ -x /lib/systemd/systemd ] || skip "packages built and checked; no /lib/systemd/systemd to install them under"
for tool in unshare nsenter setpriv curl python3 pkg-config cc; do
	command -v "$tool" >/dev/null || skip "packages built and checked; no $tool to install them"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
	skip "packages built and checked; no overlay filesystem to install them in"


# The new root is an overlay: / below, read-only, and a tmpfs above that takes every
# write. The test's directory is bound in (packages in, results out), the tmpfs layers
# are visible at /run/baton-layers for the check after the purge. pivot_root leaves
# nothing of the host's tree mounted; PID 1 is systemd, as on a machine that booted,
# and there is no policy-rc.d (this image's forbids starting services, a Debian
# machine has none).
mkdir -p "$work/layers"
printf '[Unit]\nDescription=baton packaging test\n' >"$work/baton-test.target"
cat >"$work/boot.sh" <<EOF
#!/bin/sh
set -e
layers="$work/layers"
mount -t tmpfs tmpfs "\$layers"
mkdir "\$layers/upper" "\$layers/work" "\$layers/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=\$layers/upper,workdir=\$layers/work" "\$layers/root"
root="\$layers/root"
mount --rbind /dev "\$root/dev"
mount --rbind /sys "\$root/sys"
mount -t proc proc "\$root/proc"
for d in run tmp var/tmp; do mount -t tmpfs tmpfs "\$root/\$d"; done
mkdir -p "\$root$work" "\$root/run/baton-layers" "\$root/run/old-root"
mount --bind "$work" "\$root$work"
mount --bind "\$layers" "\$root/run/baton-layers"
rm -f "\$root/usr/sbin/policy-rc.d"
cp "$work/baton-test.target" "\$root/etc/systemd/system/"
cd "\$root"
pivot_root . run/old-root
umount -l /run/old-root
rmdir /run/old-root
export container=baton-test
exec /lib/systemd/systemd --system --unit=baton-test.target --show-status=no
EOF
chmod +x "$work/boot.sh"
ns_boot "$work/boot.sh" "$work/systemd.log" "packages built and checked; "
# What the machine holds before the packages: the layer above / (whiteouts included).
layer() { in_ns find /run/baton-layers/upper -mindepth 1 -printf '%y %P\n' | sort; }
# batond.service pulls in sysinit.target: what it makes (systemd's own tmpfiles,
# /root/.ssh of provision.conf among them) is the machine's, not the packages'.
sctl start sysinit.target >/dev/null 2>&1 || true
layer >"$work/layer.before"
say "systemd booted over an overlay of / (pid $sd)"

# 4a. Installed: the group, batond enabled and started with the shipped configuration.
start=$SECONDS
in_ns dpkg -i "$work"/debs/libbaton0_*.deb "$work"/debs/libbaton-dev_*.deb "$work"/debs/batond_*.deb \
	>"$work/dpkg-install.log" 2>&1 || fail "dpkg -i failed: $(tail -20 "$work/dpkg-install.log")"
in_ns getent group baton >/dev/null || fail "the group baton was not created"
[ "$(sctl is-enabled batond.service)" = enabled ] || fail "batond.service is not enabled"
[ "$(prop batond.service ActiveState)" = active ] || fail "batond.service was not started"
[ "$(sctl is-enabled batond.socket)" = disabled ] || fail "batond.socket is $(sctl is-enabled batond.socket), not disabled"
status=$(in_ns batonctl status) || fail "batonctl status does not answer: $status"
[[ $status == "batond 0.1.0, pid "* ]] || fail "unexpected batonctl status: $status"
in_ns setpriv --reuid=nobody --regid=nogroup --groups="$(in_ns getent group baton | cut -d: -f3)" \
	batonctl status >/dev/null 2>&1 || fail "a member of group baton may not use batonctl"
if in_ns setpriv --reuid=nobody --regid=nogroup --clear-groups batonctl status >/dev/null 2>&1; then
	fail "a user outside group baton may use batonctl"
fi
say "installed in $((SECONDS - start)) s: group baton, batond.service enabled and active, batonctl answers root and group baton only"

# 4b. An app built against the installed libbaton (pkg-config), in the configuration.
cp "$src/examples/hello.c" "$work/hello.c"
# shellcheck disable=SC2016 # expanded in the namespace
in_ns sh -c 'cc -o /usr/local/bin/hello "$1" $(pkg-config --cflags --libs libbaton)' sh "$work/hello.c" ||
	fail "an app does not build against the installed libbaton-dev with pkg-config"
# /lib is /usr/lib on Debian 12 (merged /usr): the loader may name either.
grep -Eq "libbaton\.so\.0 => (/usr)?/lib/$arch/libbaton\.so\.0 " <<<"$(in_ns ldd /usr/local/bin/hello)" ||
	fail "the app does not load the installed libbaton.so.0"
port=$(free_port)
cat >"$work/app.conf" <<EOF

listener http { address = "tcp://127.0.0.1:$port" }
app web {
	exec = { "/usr/local/bin/hello" }
	listeners = { "http" }
	workers = 2
}
EOF
in_ns sh -c 'cat "$1" >>/etc/baton/batond.conf' sh "$work/app.conf"
# The administrator's own file, for batond@web.service: no package's.
in_ns cp /etc/baton/batond.conf /etc/baton/web.conf
in_ns batond --check -c /etc/baton/batond.conf >/dev/null || fail "the edited configuration does not check"
main=$(prop batond.service MainPID)
# A reload reads the configuration again: the app added starts; the next reload
# upgrades it. The same batond all along.
sctl reload batond.service || fail "systemctl reload batond (the app added) failed"
answer() { curl -sf --max-time 5 "http://127.0.0.1:$port/"; }
[[ $(answer) == "hello from baton generation 1 "* ]] || fail "the app added does not answer: $(answer || true)"
sctl reload batond.service || fail "systemctl reload batond (upgrade) failed"
[[ $(answer) == "hello from baton generation 2 "* ]] || fail "not generation 2 after the reload: $(answer || true)"
[ "$(prop batond.service MainPID)" = "$main" ] || fail "batond was restarted by a reload"
say "an app on the installed libbaton: systemctl reload started it (generation 1 answers), the next upgraded it (generation 2 answers)"

# 4c. A reinstall (as an upgrade) does not restart batond nor touch the edited conffile.
in_ns dpkg -i "$work"/debs/batond_*.deb >"$work/dpkg-reinstall.log" 2>&1 ||
	fail "dpkg -i again failed: $(tail -20 "$work/dpkg-reinstall.log")"
[ "$(prop batond.service MainPID)" = "$main" ] || fail "the reinstall restarted batond"
in_ns grep -q "^app web" /etc/baton/batond.conf || fail "the reinstall lost the edited configuration"
[[ $(answer) == "hello from baton generation 2 "* ]] || fail "generation 2 stopped answering after the reinstall"
say "reinstall: batond kept running (pid $main), the edited configuration kept"

# 4d. Removed: batond stopped, the configuration kept. Purged: nothing left but the
# administrator's own file, the group (Debian keeps system groups), dpkg's records and
# what the system itself wrote meanwhile (journal, wtmp, caches of ldconfig and man-db).
in_ns rm /usr/local/bin/hello
in_ns dpkg --remove batond libbaton-dev libbaton0 >"$work/dpkg-remove.log" 2>&1 ||
	fail "dpkg --remove failed: $(tail -20 "$work/dpkg-remove.log")"
[ "$(prop batond.service ActiveState)" != active ] || fail "batond still runs after dpkg --remove"
answer >/dev/null && fail "the app still answers after dpkg --remove"
in_ns grep -q "^app web" /etc/baton/batond.conf || fail "dpkg --remove did not keep the edited configuration"
in_ns dpkg --purge batond >"$work/dpkg-purge.log" 2>&1 ||
	fail "dpkg --purge failed: $(tail -20 "$work/dpkg-purge.log")"
in_ns test -e /etc/baton/web.conf || fail "the purge removed the administrator's /etc/baton/web.conf"
# New in the layer since the boot: a directory that / has too is not new (copied up).
comm -13 "$work/layer.before" <(layer) | while read -r type path; do
	[ "$type" = d ] && [ -d "/$path" ] && continue
	echo "$path"
done | grep -vxE 'etc/baton|etc/baton/web\.conf|etc/(group|gshadow)-?|etc/\.pwd\.lock|etc/ld\.so\.cache|var/lib/dpkg/.*|var/log/dpkg\.log|var/cache/(debconf|man|ldconfig)/.*|var/log/journal(/.*)?|var/log/wtmp' \
	>"$work/left.txt" || true
[ -s "$work/left.txt" ] && fail "the purge left behind: $(tr '\n' ' ' <"$work/left.txt")"
say "remove: batond stopped, the edited configuration kept; purge: nothing left but /etc/baton/web.conf and the group"
say "PASS"

#!/bin/bash
# SPDX-License-Identifier: MIT
# The RPM packages: packaging/rpm/baton.spec builds with `rpmbuild -bb` (packaging/
# build-rpm.sh, from a scratch copy of the tree, tests skipped: make check runs them),
# each package holds exactly the files it should, /etc/baton/batond.conf is a
# %config(noreplace) file, batond creates the group baton before it is installed.
# Not installed: rpm is not this system's package manager.
# Usage: rpm.sh BUILD_DIR SOURCE_DIR. Exits 77 (skipped) without rpmbuild.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$build/tests/install/rpm
say() { printf 'rpm-test: %s\n' "$*"; }
fail() {
	printf 'rpm-test: FAIL: %s\n' "$*" >&2
	exit 1
}
command -v rpmbuild >/dev/null || { echo "SKIPPED: no rpmbuild (packaging/deps.sh installs rpm)"; exit 77; }
rm -rf "$work"
mkdir -p "$work"

start=$SECONDS
"$src/packaging/build-rpm.sh" "$work/rpms" --without tests >/dev/null || fail "the packages do not build"
say "rpmbuild -bb: $(cd "$work/rpms" && echo *.rpm) in $((SECONDS - start)) s"

version=$(sed -n 's/^Version:[[:space:]]*//p' "$src/packaging/rpm/baton.spec")
libdir=$(rpm --eval '%{_libdir}')
q() { rpm -qp "$@" 2>/dev/null; }
# The files of a package (directories and build-id links aside), exactly these.
expect_files() {
	local pkg=$1 rpm
	shift
	rpm=$(echo "$work/rpms/$pkg-$version"-*.rpm)
	[ -f "$rpm" ] || fail "no package $pkg"
	diff -u <(printf '%s\n' "$@" | sort) \
		<(q --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$rpm" | awk '$1 !~ /^d/ {print $2}' |
			grep -v '^/usr/lib/\.build-id/' | sed 's/\.gz$//' | sort) >"$work/files.diff" ||
		fail "$pkg does not hold the expected files (- expected, + found): $(cat "$work/files.diff")"
}
expect_files batond /etc/baton/batond.conf /usr/bin/batonctl /usr/sbin/batond \
	/usr/share/bash-completion/completions/batonctl \
	/usr/lib/systemd/system/batond.service /usr/lib/systemd/system/batond@.service \
	/usr/lib/systemd/system/batond.socket /usr/lib/sysusers.d/baton.conf \
	/usr/share/doc/batond/README.md /usr/share/doc/batond/dispatch.md /usr/share/doc/batond/systemd.md \
	/usr/share/doc/batond/examples/batond.conf "/usr/share/licenses/batond-$version/LICENSE" \
	/usr/share/man/man5/batond.conf.5 /usr/share/man/man8/batonctl.8 /usr/share/man/man8/batond.8
expect_files libbaton "$libdir/libbaton.so.0" "$libdir/libbaton.so.$version" \
	"/usr/share/licenses/libbaton-$version/LICENSE"
expect_files libbaton-devel /usr/include/baton.h "$libdir/libbaton.so" "$libdir/pkgconfig/libbaton.pc" \
	"$libdir/cmake/baton/batonConfig.cmake" "$libdir/cmake/baton/batonConfigVersion.cmake" \
	"$libdir/cmake/baton/batonTargets.cmake" "$libdir/cmake/baton/batonTargets-relwithdebinfo.cmake" \
	/usr/share/doc/libbaton-devel/protocol.md /usr/share/man/man3/libbaton.3
expect_files libbaton-static "$libdir/libbaton.a" "$libdir/cmake/baton/batonStaticTargets.cmake" \
	"$libdir/cmake/baton/batonStaticTargets-relwithdebinfo.cmake"

batond=$(echo "$work/rpms/batond-$version"-*.rpm)
[ "$(q --configfiles "$batond")" = /etc/baton/batond.conf ] || fail "batond's config files are not just /etc/baton/batond.conf"
[ "$(q --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$batond" | grep ' /etc/baton/batond.conf$')" = "cn /etc/baton/batond.conf" ] ||
	fail "/etc/baton/batond.conf is not %config(noreplace)"
grep -q 'groupadd -r baton' <<<"$(q --scripts "$batond")" || fail "batond does not create the group baton"
grep -q "^libbaton(.*) = $version" <<<"$(q --requires "$work/rpms/libbaton-devel-$version"-*.rpm)" ||
	fail "libbaton-devel does not require its libbaton"
pc=$(rpm2archive - <"$(echo "$work/rpms/libbaton-devel-$version"-*.rpm)" | tar -xzOf - ".$libdir/pkgconfig/libbaton.pc")
grep -qx "libdir=\${prefix}/${libdir#/usr/}" <<<"$pc" || fail "libbaton.pc names the wrong libdir: $pc"
say "contents: the files expected in each package; batond.conf %config(noreplace); group baton created in %pre"
say "PASS"

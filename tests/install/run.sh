#!/bin/bash
# SPDX-License-Identifier: MIT
# `make install` as a user or a packager uses it, into scratch DESTDIRs, checked for
# what a user of the install would notice:
#  1. the build under test (its configured prefix): every file in place, the units
#     start the batond, batonctl and config that were installed;
#  2. `make install PREFIX=/usr` of the tree, in a build of its own: the same, with the
#     multiarch libdir (lib/x86_64-linux-gnu) Debian's /usr gets;
# and against each, a program built once with pkg-config (libbaton.pc) and once with
# CMake (find_package(baton 0.1): baton::baton, baton::baton_static) runs; then, in 2,
# `make install` again over an edited batond.conf keeps the edit, `make uninstall`
# removes everything but that edited file, and an unedited one too.
# Usage: run.sh SOURCE_DIR BUILD_DIR PREFIX FULL_LIBDIR FULL_SYSCONFDIR C_COMPILER
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
prefix=$3 libdir=$4 sysconfdir=$5 cc=$6
tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
say() { printf 'install-test: %s\n' "$*"; }
fail() {
	printf 'install-test: FAIL: %s\n' "$*" >&2
	exit 1
}

# check_tree ROOT PREFIX LIBDIR SYSCONFDIR: what an install holds.
check_tree() {
	local root=$1 prefix=$2 libdir=$3 sysconfdir=$4 f unit path
	for f in "$prefix/sbin/batond" "$prefix/bin/batonctl" "$prefix/include/baton.h" \
		"$libdir/libbaton.so.0" "$libdir/libbaton.so" "$libdir/libbaton.a" "$libdir/pkgconfig/libbaton.pc" \
		"$libdir/cmake/baton/batonConfig.cmake" "$libdir/cmake/baton/batonConfigVersion.cmake" \
		"$sysconfdir/baton/batond.conf" "$sysconfdir/baton/batond.conf.example" \
		"$prefix/lib/systemd/system/batond.service" "$prefix/lib/systemd/system/batond@.service" \
		"$prefix/lib/systemd/system/batond.socket" \
		"$prefix/share/man/man8/batond.8" "$prefix/share/man/man3/libbaton.3" \
		"$prefix/share/bash-completion/completions/batonctl"; do
		[ -e "$root$f" ] || fail "$f was not installed"
	done
	# Every absolute path a unit starts or reads is one that was installed.
	for unit in batond.service batond@.service; do
		for path in $(sed -n 's/^Exec[A-Za-z]*=-\{0,1\}//p' "$root$prefix/lib/systemd/system/$unit" |
			tr ' ' '\n' | grep '^/' | grep -v '%'); do
			[ -e "$root$path" ] || fail "$unit names $path, which was not installed"
		done
	done
	# libbaton.pc names the configured directories, not ones guessed from where it is.
	local pc=$root$libdir/pkgconfig/libbaton.pc
	grep -qx "prefix=$prefix" "$pc" || fail "libbaton.pc: prefix is not $prefix: $(cat "$pc")"
	grep -qx "libdir=\${prefix}${libdir#"$prefix"}" "$pc" || fail "libbaton.pc: libdir is not $libdir: $(cat "$pc")"
	grep -qx "includedir=\${prefix}/include" "$pc" || fail "libbaton.pc: includedir is not $prefix/include: $(cat "$pc")"
}

# runs_with_installed_lib NAME PROGRAM ROOT LIBDIR: prints -6 (-ENXIO: not under
# batond or systemd) and loads the installed libbaton.so.0 (or, static, none).
runs_with_installed_lib() {
	local name=$1 prog=$2 root=$3 libdir=$4 out libs
	out=$(env -u LISTEN_FDS -u BATON_FD LD_LIBRARY_PATH="$root$libdir" "$prog")
	[ "$out" = "-6" ] || fail "$name printed '$out', not -6 (ENXIO: not under batond or systemd)"
	# Captured first: with pipefail, grep -q quitting early can kill ldd with SIGPIPE.
	libs=$(LD_LIBRARY_PATH="$root$libdir" ldd "$prog")
	case $name in
	*static*) grep -q libbaton <<<"$libs" && fail "$name, linked statically, loads libbaton: $libs" ;;
	*) grep -q "$root$libdir/libbaton.so.0" <<<"$libs" || fail "$name does not load the installed libbaton: $libs" ;;
	esac
	return 0
}

# consumers TAG ROOT PREFIX LIBDIR: the program, built with pkg-config and with CMake.
consumers() {
	local tag=$1 root=$2 prefix=$3 libdir=$4 flags
	# The .pc says /usr/...: PKG_CONFIG_SYSROOT_DIR puts the DESTDIR in front, as for
	# a sysroot. System directories are not filtered out, they are not the system's.
	flags=$(PKG_CONFIG_PATH='' PKG_CONFIG_LIBDIR="$root$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root" \
		PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1 pkg-config --cflags --libs libbaton) ||
		fail "pkg-config does not find libbaton in $root$libdir/pkgconfig"
	# shellcheck disable=SC2086 # pkg-config's output is meant to be split
	"$cc" "$src/tests/install/consumer/app.c" -o "$tmp/app-pc-$tag" $flags ||
		fail "a program does not build with pkg-config libbaton ($flags)"
	runs_with_installed_lib "the pkg-config program" "$tmp/app-pc-$tag" "$root" "$libdir"

	local cbuild=$tmp/consumer-$tag
	cmake -S "$src/tests/install/consumer" -B "$cbuild" -DCMAKE_C_COMPILER="$cc" \
		-DCMAKE_PREFIX_PATH="$root$prefix" >"$cbuild.log" 2>&1 &&
		cmake --build "$cbuild" >>"$cbuild.log" 2>&1 ||
		fail "a program does not build with find_package(baton 0.1): $(tail -20 "$cbuild.log")"
	grep -qx "baton_DIR:PATH=$root$libdir/cmake/baton" "$cbuild/CMakeCache.txt" ||
		fail "find_package(baton) found $(sed -n 's/^baton_DIR:PATH=//p' "$cbuild/CMakeCache.txt"), not $root$libdir/cmake/baton"
	runs_with_installed_lib "the CMake program (baton::baton)" "$cbuild/app_shared" "$root" "$libdir"
	runs_with_installed_lib "the CMake program (baton::baton_static)" "$cbuild/app_static" "$root" "$libdir"
}

# 1. The build under test.
dest=$tmp/dest-build
DESTDIR=$dest cmake --install "$build" >"$tmp/install.log" 2>&1 ||
	fail "cmake --install failed: $(tail -20 "$tmp/install.log")"
check_tree "$dest" "$prefix" "$libdir" "$sysconfdir"
consumers build "$dest" "$prefix" "$libdir"
say "$prefix: binaries, library, header, config, units, man pages; pkg-config and find_package(baton) programs run"

# 2. make install PREFIX=/usr: the multiarch libdir, as Debian has it.
multiarch=$("$cc" -print-multiarch 2>/dev/null || true)
if [ -n "$multiarch" ]; then usr_libdir=/usr/lib/$multiarch; else usr_libdir=; fi
dest=$tmp/dest-usr
usr_build=$tmp/build-usr
# make as a user runs it, not as the make check that may run this test.
mk() {
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$src" --no-print-directory "$@" BUILD="$usr_build" \
		PREFIX=/usr DESTDIR="$dest" CMAKE_ARGS="-DBATON_TESTS=OFF -DCMAKE_C_COMPILER=$cc"
}
mk install >"$tmp/make-install.log" 2>&1 || fail "make install PREFIX=/usr failed: $(tail -20 "$tmp/make-install.log")"
[ -n "$usr_libdir" ] || usr_libdir=/usr/$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$usr_build/CMakeCache.txt")
check_tree "$dest" /usr "$usr_libdir" /etc
consumers usr "$dest" /usr "$usr_libdir"
# find_package(baton 0.2): 0.x releases may break the API, 0.1.y does not do.
if cmake -S "$src/tests/install/consumer" -B "$tmp/consumer-0.2" -DBATON_WANTED=0.2 -DCMAKE_C_COMPILER="$cc" \
	-DCMAKE_PREFIX_PATH="$dest/usr" >"$tmp/consumer-0.2.log" 2>&1; then
	fail "find_package(baton 0.2) accepted baton 0.1"
fi
grep -q 'requested version "0.2"' "$tmp/consumer-0.2.log" ||
	fail "find_package(baton 0.2) failed, not for the version: $(tail -20 "$tmp/consumer-0.2.log")"
say "make install PREFIX=/usr: libdir $usr_libdir; pkg-config and find_package(baton) programs run; find_package(baton 0.2) refused"

# make install over an edited configuration keeps the edit; make uninstall keeps it too.
conf=$dest/etc/baton/batond.conf
shipped=$tmp/batond.conf.shipped
cp "$conf" "$shipped"
echo "# edited by the administrator" >>"$conf"
mk install >"$tmp/make-install2.log" 2>&1 || fail "make install again failed: $(tail -20 "$tmp/make-install2.log")"
grep -qx "# edited by the administrator" "$conf" || fail "make install replaced the edited $conf"
grep -q "Kept: $conf" "$tmp/make-install2.log" || fail "make install did not say it kept $conf"
[ -f "$conf.example" ] || fail "make install did not put batond.conf.example beside the kept config"
mk uninstall >"$tmp/uninstall.log" 2>&1 || fail "make uninstall failed: $(tail -20 "$tmp/uninstall.log")"
left=$(cd "$dest" && find . ! -type d | sort | tr '\n' ' ')
[ "$left" = "./etc/baton/batond.conf " ] || fail "make uninstall left '$left', not just the edited config"
grep -qx "# edited by the administrator" "$conf" || fail "make uninstall changed the edited $conf"
# Unedited, the configuration goes too, and with it every directory of baton's own.
cp "$shipped" "$conf"
mk install >"$tmp/make-install3.log" 2>&1 || fail "make install a third time failed: $(tail -20 "$tmp/make-install3.log")"
mk uninstall >"$tmp/uninstall2.log" 2>&1 || fail "make uninstall failed: $(tail -20 "$tmp/uninstall2.log")"
left=$(cd "$dest" && find . ! -type d | sort | tr '\n' ' ')
[ -z "$left" ] || fail "make uninstall left '$left' where the config was unedited"
own_dirs=$(cd "$dest" && find . -type d -name baton | tr '\n' ' ')
[ -z "$own_dirs" ] || fail "make uninstall left the directories $own_dirs"
say "make install over an edited batond.conf kept it; make uninstall removed everything else, and an unedited batond.conf too"
say "PASS"

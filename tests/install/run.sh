#!/bin/bash
# `make install` as a packager uses it: installs the build into a scratch DESTDIR and
# checks what a user of the install would notice. The units start the batond, batonctl
# and config that were installed; libbaton.pc builds a program against the installed
# header and library, and that program runs (standalone: "not available", -ENXIO).
# Usage: run.sh BUILD_DIR PREFIX FULL_LIBDIR FULL_SYSCONFDIR C_COMPILER
set -euo pipefail
build=$1 prefix=$2 libdir=$3 sysconfdir=$4 cc=$5
dest=$(mktemp -d "${TMPDIR:-/tmp}/baton-install-test.XXXXXX")
trap 'rm -rf "$dest"' EXIT
fail() { echo "install-test: $*" >&2; exit 1; }

DESTDIR=$dest cmake --install "$build" >"$dest.log" 2>&1 || { cat "$dest.log" >&2; rm -f "$dest.log"; fail "cmake --install failed"; }
rm -f "$dest.log"

for f in "$prefix/sbin/batond" "$prefix/bin/batonctl" "$prefix/include/baton.h" \
	"$libdir/libbaton.so.0" "$libdir/libbaton.a" "$libdir/pkgconfig/libbaton.pc" \
	"$sysconfdir/baton/batond.conf" "$prefix/lib/systemd/system/batond.service" \
	"$prefix/lib/systemd/system/batond@.service" "$prefix/lib/systemd/system/batond.socket" \
	"$prefix/share/man/man8/batond.8" "$prefix/share/man/man3/libbaton.3"; do
	[ -e "$dest$f" ] || fail "$f was not installed"
done

# Every absolute path a unit starts or reads is one that was installed.
for unit in batond.service batond@.service; do
	for path in $(sed -n 's/^Exec[A-Za-z]*=-\{0,1\}//p' "$dest$prefix/lib/systemd/system/$unit" |
		tr ' ' '\n' | grep '^/' | grep -v '%'); do
		[ -e "$dest$path" ] || fail "$unit names $path, which was not installed"
	done
done

# A program built from the installed header and library by way of libbaton.pc.
cat >"$dest/app.c" <<'C'
#include <baton.h>
#include <stdio.h>
int main(void)
{
	printf("%d\n", baton_listener("http"));
	return 0;
}
C
export PKG_CONFIG_PATH=$dest$libdir/pkgconfig
# shellcheck disable=SC2046 # pkg-config's output is meant to be split
"$cc" "$dest/app.c" -o "$dest/app" $(pkg-config --cflags --libs libbaton) ||
	fail "a program does not build with pkg-config libbaton"
out=$(env -u LISTEN_FDS -u BATON_FD LD_LIBRARY_PATH="$dest$libdir" "$dest/app")
[ "$out" = "-6" ] || fail "the program printed '$out', not -6 (ENXIO: not under batond or systemd)"
# Captured first: with pipefail, grep -q quitting early can kill ldd with SIGPIPE
# and fail a pipeline whose answer was yes.
libs=$(LD_LIBRARY_PATH="$dest$libdir" ldd "$dest/app")
grep -q "$dest$libdir/libbaton.so.0" <<<"$libs" || fail "the program did not load the installed libbaton"
echo "install-test: PASS ($prefix: binaries, library, header, pkg-config, config, units, man pages)"

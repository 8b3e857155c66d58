#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the RPM packages (batond, libbaton, libbaton-devel, libbaton-static) into
# OUT_DIR with `rpmbuild -bb packaging/rpm/baton.spec`, from a tarball of a scratch
# copy of this source tree; the log is OUT_DIR/build-rpm.log. Where rpm is not the
# system's package manager (Debian: its database is empty), --nodeps. Further
# rpmbuild arguments pass through: --without tests skips the tests.
# Usage: build-rpm.sh OUT_DIR [RPMBUILD_ARGS...]
set -eu
out=${1:?usage: build-rpm.sh OUT_DIR [RPMBUILD_ARGS...]}
shift
src=$(cd "$(dirname "$0")/.." && pwd)
spec=$src/packaging/rpm/baton.spec
command -v rpmbuild >/dev/null || { echo "build-rpm: no rpmbuild (apt-get install rpm, or dnf install rpm-build)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-rpm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/top/SOURCES"
"$src/packaging/copy-tree.sh" "$tmp/baton-$version"
tar -C "$tmp" -czf "$tmp/top/SOURCES/baton-$version.tar.gz" "baton-$version"
cp "$src/packaging/rpm/baton.sysusers" "$tmp/top/SOURCES/"

nodeps=
rpm -q rpm >/dev/null 2>&1 || nodeps=--nodeps
log=$out/build-rpm.log
if ! rpmbuild -bb --define "_topdir $tmp/top" $nodeps "$@" "$spec" >"$log" 2>&1; then
	tail -40 "$log" >&2
	echo "build-rpm: rpmbuild failed (whole log: $log)" >&2
	exit 1
fi
rm -f "$out"/*.rpm
mv "$tmp"/top/RPMS/*/*.rpm "$out"/
ls "$out"/*.rpm

#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the Debian packages (batond, libbaton0, libbaton-dev) into OUT_DIR, from a
# scratch copy of this source tree: the tree itself is left as it is. In the copy,
# packaging/debian becomes debian/ and `dpkg-buildpackage -us -uc -b` runs; the
# build log is OUT_DIR/build-deb.log. DEB_BUILD_OPTIONS=nocheck skips the tests.
# By hand, in a tree of your own: cp -r packaging/debian debian && dpkg-buildpackage -us -uc -b
# Usage: build-deb.sh OUT_DIR
set -eu
out=${1:?usage: build-deb.sh OUT_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
command -v dpkg-buildpackage >/dev/null || { echo "build-deb: no dpkg-buildpackage (apt-get install dpkg-dev debhelper)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tree=$tmp/baton-$version

"$src/packaging/copy-tree.sh" "$tree"
rm -rf "$tree/debian"
mv "$tree/packaging/debian" "$tree/debian"

log=$out/build-deb.log
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b -jauto) >"$log" 2>&1; then
	tail -40 "$log" >&2
	echo "build-deb: dpkg-buildpackage failed (whole log: $log)" >&2
	exit 1
fi
rm -f "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
mv "$tmp"/*.deb "$tmp"/*.changes "$tmp"/*.buildinfo "$out"/
ls "$out"/*.deb

#!/bin/sh
# SPDX-License-Identifier: MIT
# make uninstall: removes what `make install` put in place, as BUILD/install_manifest.txt
# lists it, under the same DESTDIR. The configuration (BUILD/install_configs.txt: the
# checksum of the one shipped and its path) is removed only while it is unedited; an
# administrator's edits are kept. Then baton's own directories, if they are empty.
# Usage: uninstall.sh BUILD_DIR
set -eu
build=${1:?usage: uninstall.sh BUILD_DIR}
manifest=$build/install_manifest.txt
configs=$build/install_configs.txt
dest=${DESTDIR:-}
if [ ! -f "$manifest" ]; then
	echo "uninstall: no $manifest: nothing was installed from $build" >&2
	exit 1
fi

dirs=$(mktemp "${TMPDIR:-/tmp}/baton-uninstall.XXXXXX")
trap 'rm -f "$dirs"' EXIT
# CMake writes the last line without a newline.
while IFS= read -r f || [ -n "$f" ]; do
	[ -n "$f" ] || continue
	if [ -e "$dest$f" ] || [ -L "$dest$f" ]; then
		rm -f -- "$dest$f"
		echo "-- Removed: $dest$f"
	fi
	dirname -- "$dest$f" >>"$dirs"
done <"$manifest"

if [ -f "$configs" ]; then
	while read -r sum f; do
		[ -e "$dest$f" ] || continue
		if [ "$(sha256sum <"$dest$f" | cut -d' ' -f1)" = "$sum" ]; then
			rm -f -- "$dest$f"
			echo "-- Removed: $dest$f"
		else
			echo "-- Kept: $dest$f (edited since it was installed)"
		fi
		dirname -- "$dest$f" >>"$dirs"
	done <"$configs"
fi

# Only directories of baton's own (etc/baton, lib/cmake/baton): the others may be shared.
sort -ru "$dirs" | while IFS= read -r d; do
	case $d in */baton) rmdir -- "$d" 2>/dev/null && echo "-- Removed: $d/" || true ;; esac
done

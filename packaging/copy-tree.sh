#!/bin/sh
# SPDX-License-Identifier: MIT
# Copies baton's source tree as it is now into DEST_DIR, for a package build that
# must not write into the tree: in a git checkout, the files git knows of (tracked,
# or new and not ignored) that exist; elsewhere, everything but build directories.
# Usage: copy-tree.sh DEST_DIR
set -eu
dest=${1:?usage: copy-tree.sh DEST_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dest"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$src" ls-files -z --cached --others --exclude-standard |
		(cd "$src" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
		tar -C "$src" --null -T - -cf - | tar -C "$dest" -xf -
else
	tar -C "$src" --exclude=./.git --exclude='./build*' --exclude='./obj-*' -cf - . | tar -C "$dest" -xf -
fi

#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs baton's build and test dependencies on Debian/Ubuntu when they are
# missing. As root it runs apt-get; otherwise it prints the command and fails.
set -eu
pkgs="gcc make cmake pkg-config libsystemd-dev libjson-c-dev libcmocka-dev curl clang libclang-rt-14-dev gnuplot-nox systemd dpkg-dev debhelper lintian rpm prometheus libssl-dev openssl gunicorn python3 nodejs golang-go"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "baton: missing build dependencies:$missing" >&2
	echo "run as root: apt-get update && $cmd" >&2
	exit 1
fi
echo "baton: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
$cmd

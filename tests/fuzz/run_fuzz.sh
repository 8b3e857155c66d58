#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs a libFuzzer binary for SECONDS on a copy of its seeds (directories or
# files), so that a run never writes into the source tree, and ends with one
# line: "NAME: N execs in S s (R/s), C new units". Crash files go to
# ARTIFACT_DIR. Arguments after "--" go to the fuzzer.
# usage: run_fuzz.sh FUZZER SECONDS ARTIFACT_DIR SEED... [-- FUZZER_ARGS...]
set -eu
fuzzer=$1 seconds=$2 artifacts=$3
shift 3
work=$(mktemp -d "${TMPDIR:-/tmp}/baton-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/corpus"
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	if [ -d "$1" ]; then cp "$1"/* "$work/corpus/"; else cp "$1" "$work/corpus/"; fi
	shift
done
[ $# -gt 0 ] && shift
mkdir -p "$artifacts"
rc=0
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$artifacts/" "$@" "$work/corpus" >"$work/log" 2>&1 || rc=$?
cat "$work/log"
stat_of() { sed -n "s/^stat::$1: *//p" "$work/log"; }
echo "$(basename "$fuzzer"): $(stat_of number_of_executed_units) execs in $seconds s" \
	"($(stat_of average_exec_per_sec)/s), $(stat_of new_units_added) new units, exit $rc"
exit $rc

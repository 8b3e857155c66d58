#!/bin/sh
# SPDX-License-Identifier: MIT
# ctest.sh BUILD_DIR [CTEST_ARGS...]: runs ctest in BUILD_DIR and writes one line,
# "N passed, N failed, N skipped", to BUILD_DIR/ctest.summary (with the names of
# the tests that failed or skipped), for make check's last line. Exits as ctest did.
set -u
build=$(cd "$1" && pwd) || exit 1
shift
log=$build/ctest.log
cd "$build" || exit 1
ctest --output-on-failure "$@" 2>&1 | tee ctest.log
total=$(sed -n 's/.*tests passed, [0-9]* tests* failed out of \([0-9]*\).*/\1/p' ctest.log)
failed=$(sed -n 's/.*tests passed, \([0-9]*\) tests* failed out of.*/\1/p' ctest.log)
skipped_names=$(sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (Skipped)$/\1/p' ctest.log | tr '\n' ' ')
failed_names=$(sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (\(Failed\|Timeout\|SEGFAULT\|Subprocess aborted\|Not Run\|.*Exception.*\))$/\1/p' ctest.log | tr '\n' ' ')
skipped=$(printf '%s' "$skipped_names" | wc -w)
if [ -z "$total" ]; then
	echo "no test ran (see $log)" >"$build/ctest.summary"
	exit 1
fi
line="$((total - failed - skipped)) passed, $failed failed, $skipped skipped"
[ -n "$failed_names" ] && line="$line (failed: ${failed_names% })"
[ -n "$skipped_names" ] && line="$line (skipped: ${skipped_names% })"
echo "$line" >"$build/ctest.summary"
[ "$failed" = 0 ]

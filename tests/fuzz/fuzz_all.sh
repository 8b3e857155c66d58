#!/bin/sh
# SPDX-License-Identifier: MIT
# make fuzz: both libFuzzer targets side by side for SECONDS each, on the seeds
# ctest gives them; each one's log goes to BUILD/tests/fuzz/NAME.log and one
# line per target says how many inputs it ran.
# usage: fuzz_all.sh BUILD_DIR SECONDS
set -u
build=$1 seconds=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$build/tests/fuzz
for f in fuzz_proto fuzz_config; do
	[ -x "$dir/$f" ] || { echo "$dir/$f: not built (needs clang with libFuzzer)"; exit 1; }
done
sh "$src/tests/fuzz/run_fuzz.sh" "$dir/fuzz_proto" "$seconds" "$dir/artifacts" \
	"$src/tests/fuzz/corpus" -- -max_len=70000 >"$dir/fuzz_proto.log" 2>&1 &
proto=$!
sh "$src/tests/fuzz/run_fuzz.sh" "$dir/fuzz_config" "$seconds" "$dir/artifacts" \
	"$src/tests/fuzz/corpus_config" "$src"/conf/*.conf -- -max_len=8192 \
	-dict="$src/tests/fuzz/config.dict" >"$dir/fuzz_config.log" 2>&1 &
config=$!
rc=0
wait $proto || rc=1
wait $config || rc=1
for f in fuzz_proto fuzz_config; do tail -n 1 "$dir/$f.log"; done
exit $rc

#!/bin/sh
# Runs a libFuzzer binary for a while on a copy of the seed corpus, so that the run
# never writes into the source tree. Crash files go to ARTIFACT_DIR.
# usage: run_fuzz.sh FUZZER CORPUS_DIR SECONDS ARTIFACT_DIR
set -eu
fuzzer=$1 corpus=$2 seconds=$3 artifacts=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/baton-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cp "$corpus"/* "$work"/
mkdir -p "$artifacts"
"$fuzzer" -max_total_time="$seconds" -max_len=70000 -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$artifacts/" "$work"

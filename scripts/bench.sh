#!/usr/bin/env bash
# make bench: runs every benchmark program of the release build; each prints
# its figures and writes them under bench/results/.
set -euo pipefail
build=$1
status=0
for b in "$build"/bench_*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" || { echo "bench: $(basename "$b") failed"; status=1; }
done
exit $status

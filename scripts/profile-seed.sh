#!/usr/bin/env bash
# Profiles sift under the seed workload with callgrind (instruction counts,
# repeatable whatever else the machine runs; perf has no hardware counters
# on these machines). Usage: scripts/profile-seed.sh [BUILD] [CONCURRENCY] [SECONDS]
# Prints the top functions (inclusive and self) per run; keeps the raw
# callgrind file when SIFT_PROFILE_OUT is set (a path).
set -euo pipefail
B=${1:-build/release}
C=${2:-4}
S=${3:-20}
src=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/sift-profile-seed-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
"$B/mock_llm" >"$T/llm.out" 2>/dev/null & pids+=($!)
"$B/mock_inventory" >"$T/inv.out" 2>/dev/null & pids+=($!)
for _ in $(seq 50); do [ -s "$T/llm.out" ] && [ -s "$T/inv.out" ] && break; sleep 0.1; done
LP=$(head -1 "$T/llm.out"); IP=$(head -1 "$T/inv.out")
"$B/sift" ingest --quiet --db "$T/db" "$src/catalog/sample/products.jsonl" >/dev/null
sed "s/INVENTORY_PORT/$IP/" "$src/bench/seed.yaml" >"$T/seed.yaml"
SIFT_LLM_BASE_URL=http://127.0.0.1:$LP/v1 SIFT_DB=$T/db \
    valgrind --tool=callgrind --callgrind-out-file="$T/cg.out" \
    "$B/sift" serve --config "$T/seed.yaml" --port 0 --workers 1 >"$T/sift.log" 2>&1 & sp=$!
pids+=($sp)
for _ in $(seq 300); do grep -q 'serving on' "$T/sift.log" && break; sleep 0.1; done
SP=$(grep -o 'serving on http://[0-9.]*:[0-9]*' "$T/sift.log" | sed 's/.*://')
# warm up (curl handles, connections, lazy initialisation), then count only the window
"$B/load_seed" --port "$SP" --concurrency "$C" --warmup 0 --duration 3 >/dev/null
callgrind_control -z "$sp" >/dev/null
out=$("$B/load_seed" --port "$SP" --concurrency "$C" --warmup 0 --duration "$S")
callgrind_control -d "$sp" >/dev/null
runs=$(echo "$out" | sed 's/.*"completed":\([0-9]*\).*/\1/')
drained=$(echo "$out" | sed 's/.*"drained":\([0-9]*\).*/\1/')
runs=$((runs + drained))
f=$(ls -t "$T"/cg.out* | head -1)
total=$(callgrind_annotate "$f" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",","",$1); print $1}')
echo "runs counted: $runs; instructions: $total; per run: $((total / runs))"
echo "--- self (top 25) ---"
callgrind_annotate "$f" 2>/dev/null | grep -A28 'file:function' | head -28
echo "--- inclusive (top 40) ---"
callgrind_annotate --inclusive=yes "$f" 2>/dev/null | grep -A43 'file:function' | head -43
[ -n "${SIFT_PROFILE_OUT:-}" ] && cp "$f" "$SIFT_PROFILE_OUT"
exit 0

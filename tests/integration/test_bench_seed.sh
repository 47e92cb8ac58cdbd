#!/usr/bin/env bash
# Keeps the seed benchmark harness from rotting (bench/bench_seed.c, README in
# bench/): mocks, sift serve with bench/seed.yaml and load_seed at
# concurrency 10 for 2 s. Asserts 0 errors, that every run went through the
# HTTP check_inventory tool, and that the result files are well-formed. No
# timing is asserted: the figures belong to `make bench`.
set -euo pipefail
build=${SIFT_BUILD_DIR:?}
for p in bench_seed load_seed mock_llm mock_inventory sift; do
    [ -x "$build/$p" ] || { echo "skip: $build/$p not built"; exit 77; }
done
tmp=$(mktemp -d /tmp/sift-test-bench-seed-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/out" ] && cat "$tmp/out"; exit 1; }

SIFT_BENCH_RESULTS=$tmp "$build/bench_seed" --levels 10 --warmup 0.5 --duration 2 \
    --name seed-smoke >"$tmp/out" 2>&1 || fail "bench_seed exited with $?"
# bench_seed stops what it started and removes its temporary directory
line=$(grep -m1 '^bench_seed: sift pid' "$tmp/out") || fail "no start line"
for pid in $(sed -E 's/.*sift pid ([0-9]+).*mock_llm pid ([0-9]+).*mock_inventory pid ([0-9]+).*/\1 \2 \3/' <<<"$line"); do
    ! kill -0 "$pid" 2>/dev/null || fail "process $pid is still running"
done
dir=${line##*files in }
[ ! -e "$dir" ] || fail "$dir was left behind"

python3 - "$tmp/seed-smoke.json" <<'PY' || fail "seed-smoke.json"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["bench"] == "seed-smoke", doc["bench"]
assert doc["date"] and "cores" in doc["machine"], doc
figs = {f["name"]: f["value"] for f in doc["figures"]}
for f in doc["figures"]:
    assert set(f) == {"name", "value", "unit"}, f
assert figs["c=10 errors"] == 0, figs["c=10 errors"]
assert figs["c=10 runs measured"] > 0, figs["c=10 runs measured"]
for k in ("runs/s", "latency p50", "latency p99", "sift CPU per run (utime+stime)",
          "sift RSS max", "event-loop lag p99 (histogram bucket bound)", "mock_llm CPU per run",
          "mock_inventory CPU per run", "load_seed CPU per run"):
    assert figs["c=10 " + k] >= 0, k
PY
md=$tmp/seed-smoke.md
grep -q '^# seed-smoke' "$md" || fail "md title"
grep -q '^## Per concurrency level' "$md" || fail "md per-level section"
grep -Eq '^\| 10 \| [0-9]+ \|' "$md" || fail "md row for concurrency 10"
grep -q 'c=10: 0, 0, 0, 0, 0;' "$md" || fail "md errors by kind"
# a level the open-file limit cannot hold is reported as such, not run
(
    ulimit -Sn 600 && ulimit -Hn 600 || exit 77
    SIFT_BENCH_RESULTS=$tmp "$build/bench_seed" --levels 5,1000 --warmup 0.3 --duration 1 \
        --name seed-fd >"$tmp/out-fd" 2>&1
) && fail "bench_seed should fail when a level cannot run"
grep -q '^| 1000 | not run: not reachable here: .*open-file limit is 600' "$tmp/seed-fd.md" ||
    fail "no note for the level over the open-file limit: $(cat "$tmp/out-fd")"
grep -Eq '^\| 5 \| [0-9]+ \|' "$tmp/seed-fd.md" || fail "the level under the limit did not run"
echo "ok"

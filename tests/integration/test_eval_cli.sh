#!/usr/bin/env bash
# `sift eval` end to end on a hand-computed case, plus its usage and file errors.
#
# Three products, three queries, lexical mode (BM25 alone, so the lists are
# known: "apple" finds only A1, "banana" only B1, "zzzz" nothing):
#   q1 labels A1=2, B1=1; list [A1]: NDCG = 2 / (2 + 1/log2 3) = 0.760200,
#      RR 1, recall 1/2
#   q2 labels B1=2;       list [B1]: NDCG 1, RR 1, recall 1
#   q3 labels C1=2;       list []:   NDCG 0, RR 0, recall 0
# Means over the three judged queries: NDCG@10 0.5867, MRR@10 0.6667, R@100 0.5.
set -euo pipefail
bin=${SIFT_BUILD_DIR:-build}/sift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_eval_cli: $*" >&2; exit 1; }

cat >"$tmp/products.jsonl" <<'EOF'
{"sku":"A1","title":"red apple","description":"a fruit"}
{"sku":"B1","title":"green banana","description":"a fruit"}
{"sku":"C1","title":"yellow cherry","description":"a fruit"}
EOF
printf 'query_id\tquery\nq1\tapple\nq2\tbanana\nq3\tzzzz\n' >"$tmp/queries.tsv"
printf 'query_id\tsku\tgain\nq1\tA1\t2\nq1\tB1\t1\nq2\tB1\t2\nq3\tC1\t2\n' >"$tmp/qrels.tsv"

out=$("$bin" eval --queries "$tmp/queries.tsv" --labels "$tmp/qrels.tsv" \
    --products "$tmp/products.jsonl" --mode lexical)
echo "$out"
grep -q '^NDCG@10    0.5867$' <<<"$out" || fail "NDCG@10 is not 0.5867"
grep -q '^MRR@10     0.6667$' <<<"$out" || fail "MRR@10 is not 0.6667"
grep -q '^R@100      0.5000$' <<<"$out" || fail "R@100 is not 0.5000"
grep -q '^queries    3 run, 3 judged, 3 with a label of gain >= 2$' <<<"$out" || fail "query counts"

# JSON, a store on disk, R@1 and a top gain of 1 (B1 at gain 1 now counts for MRR too).
"$bin" ingest --quiet --db "$tmp/s.db" "$tmp/products.jsonl" 2>/dev/null
json=$("$bin" eval --queries "$tmp/queries.tsv" --labels "$tmp/qrels.tsv" --db "$tmp/s.db" \
    --mode lexical --k 1 --top-gain 1 --json)
echo "$json"
node -e '
const r = JSON.parse(process.argv[1]);
const want = {mode: "lexical", products: 3, queries: 3, judged: 3, with_top_gain: 3,
              top_gain: 1, "ndcg@10": 0.5867, "mrr@10": 0.6667, "recall@1": 0.5};
for (const [k, v] of Object.entries(want))
    if (r[k] !== v) { console.error(`${k}: ${r[k]} != ${v}`); process.exit(1); }
if (!(r.p50_ms >= 0 && r.p99_ms >= r.p50_ms)) process.exit(1);
' "$json" || fail "JSON figures"

# Hybrid runs and scores at least what lexical does on this case.
"$bin" eval --queries "$tmp/queries.tsv" --labels "$tmp/qrels.tsv" \
    --products "$tmp/products.jsonl" >/dev/null || fail "hybrid run"

# Help and usage errors (exit 2), run-time errors (exit 1) with actionable messages.
"$bin" eval --help | grep -q -- '--queries' || fail "--help"
"$bin" --help | grep -q '^  eval ' || fail "eval missing from sift --help"
expect() { # expect STATUS PATTERN ARGS...
    local want=$1 pat=$2 st=0
    shift 2
    err=$("$bin" eval "$@" 2>&1 >/dev/null) || st=$?
    [ "$st" -eq "$want" ] || fail "exit $st, not $want, for: $* ($err)"
    grep -q -- "$pat" <<<"$err" || fail "message \"$err\" lacks \"$pat\" for: $*"
}
Q=(--queries "$tmp/queries.tsv" --labels "$tmp/qrels.tsv")
expect 2 'required' --products "$tmp/products.jsonl"
expect 2 'exactly one of --db and --products' "${Q[@]}"
expect 2 'exactly one of --db and --products' "${Q[@]}" --db x --products y
expect 2 'mode "semantic"' "${Q[@]}" --products "$tmp/products.jsonl" --mode semantic
expect 2 '\-\-k must be' "${Q[@]}" --products "$tmp/products.jsonl" --k 0
expect 1 "$tmp/nope.tsv" --queries "$tmp/nope.tsv" --labels "$tmp/qrels.tsv" \
    --products "$tmp/products.jsonl"
expect 1 "cannot open $tmp/nope.jsonl" "${Q[@]}" --products "$tmp/nope.jsonl"
printf 'id\ttext\nq1\tapple\n' >"$tmp/badhead.tsv"
expect 1 'badhead.tsv' --queries "$tmp/badhead.tsv" --labels "$tmp/qrels.tsv" \
    --products "$tmp/products.jsonl"
printf 'query_id\tsku\tgain\nq1\tA1\tlots\n' >"$tmp/badgain.tsv"
expect 1 'badgain.tsv.*line 2' --queries "$tmp/queries.tsv" --labels "$tmp/badgain.tsv" \
    --products "$tmp/products.jsonl"
expect 1 "$tmp/missing.db" "${Q[@]}" --db "$tmp/missing.db"
echo "test_eval_cli: ok"

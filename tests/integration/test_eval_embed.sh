#!/usr/bin/env bash
# `sift eval` with the configured embedding provider: the OpenAI-compatible
# one, served by bench/mock_embed (deterministic vectors), chosen by --config
# and SIFT_EMBED_* as `sift serve` chooses it. The catalog is embedded in one
# request, the queries up front in one more (batched, not one per query); the
# report names the embedder; lexical mode never embeds a query; the figures
# are the same on a second run; a provider that is gone fails with the cause.
set -euo pipefail
bin=${SIFT_BUILD_DIR:-build}/sift
mock="${SIFT_BUILD_DIR:-build}/mock_embed"
[ -x "$mock" ] || { echo "no $mock: skipped"; exit 77; }
tmp=$(mktemp -d)
mock_pid=
cleanup() {
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "test_eval_embed: $*" >&2; exit 1; }
cd "$tmp"
unset OPENAI_API_KEY SIFT_EMBED_PROVIDER SIFT_EMBED_MODEL SIFT_EMBED_BASE_URL SIFT_EMBED_API_KEY

"$mock" --dims 16 >"$tmp/mock.out" 2>"$tmp/mock.err" &
mock_pid=$!
for _ in $(seq 100); do [ -s "$tmp/mock.out" ] && break; sleep 0.1; done
base=$(head -1 "$tmp/mock.out")
[ -n "$base" ] || fail "mock_embed did not start"
requests() { # the mock's request count (it prints one JSON line per SIGUSR1)
    local n
    n=$(wc -l <"$tmp/mock.out")
    kill -USR1 "$mock_pid"
    for _ in $(seq 50); do [ "$(wc -l <"$tmp/mock.out")" -gt "$n" ] && break; sleep 0.1; done
    tail -1 "$tmp/mock.out" | sed 's/.*"requests":\([0-9]*\).*/\1/'
}

for i in $(seq 1 40); do
    printf '{"sku":"P%d","title":"product %d shoe","description":"item %d"}\n' "$i" "$i" "$i"
done >"$tmp/products.jsonl"
{
    printf 'query_id\tquery\n'
    for i in $(seq 1 30); do printf 'q%d\tproduct %d\n' "$i" "$i"; done
} >"$tmp/queries.tsv"
{
    printf 'query_id\tsku\tgain\n'
    for i in $(seq 1 30); do printf 'q%d\tP%d\t2\n' "$i" "$i"; done
} >"$tmp/qrels.tsv"
cat >"$tmp/embed.yaml" <<YAML
embed:
  provider: openai
  base_url: $base
  model: mock-embedding
  dimensions: 16
  batch_size: 64
YAML
Q=(--queries "$tmp/queries.tsv" --labels "$tmp/qrels.tsv" --products "$tmp/products.jsonl")

# --config: vector mode, text report
out=$("$bin" eval "${Q[@]}" --config "$tmp/embed.yaml" --mode vector)
echo "$out"
grep -q '^embedder   openai:mock-embedding:16$' <<<"$out" || fail "the report does not name the embedder"
grep -q '^embedding  30 queries in ' <<<"$out" || fail "no query-embedding line"
[ "$(requests)" = 2 ] || fail "40 products and 30 queries took $(requests) requests, expected 2"

# the same through the environment, as JSON; the same figures again
json=$(SIFT_EMBED_BASE_URL="$base" SIFT_EMBED_MODEL=mock-embedding "$bin" eval "${Q[@]}" \
    --config /dev/null --mode vector --json 2>&1) && fail "dimensions are required for openai"
grep -q 'dimensions' <<<"$json" || fail "no message about the dimensions: $json"
printf 'embed:\n  dimensions: 16\n' >"$tmp/dims.yaml"
json=$(SIFT_EMBED_BASE_URL="$base" SIFT_EMBED_MODEL=mock-embedding "$bin" eval "${Q[@]}" \
    --config "$tmp/dims.yaml" --mode vector --json)
echo "$json"
node -e '
const r = JSON.parse(process.argv[1]), t = process.argv[2];
if (r.embedder !== "openai:mock-embedding:16") { console.error("embedder", r.embedder); process.exit(1); }
if (!(r.query_embed_s >= 0)) { console.error("query_embed_s", r.query_embed_s); process.exit(1); }
const f = k => t.split("\n").find(l => l.startsWith(k)).split(/\s+/).pop();
for (const [k, v] of [["ndcg@10", "NDCG@10"], ["mrr@10", "MRR@10"], ["recall@100", "R@100"]])
    if (r[k].toFixed(4) !== f(v)) { console.error(k, r[k], f(v)); process.exit(1); }
' "$json" "$out" || fail "JSON report (or figures differ between two runs)"
[ "$(requests)" = 4 ] || fail "the environment run did not embed through the provider"

# lexical mode: the catalog is embedded (the searcher has vectors), no query is
lex=$("$bin" eval "${Q[@]}" --config "$tmp/embed.yaml" --mode lexical --json)
grep -q '"embedder":"openai:mock-embedding:16"' <<<"$lex" || fail "lexical: embedder"
grep -q 'query_embed_s' <<<"$lex" && fail "lexical mode embedded the queries"
[ "$(requests)" = 5 ] || fail "lexical mode: $(requests) requests, expected 5"

# the built-in embedder without a configuration, named too
hashed=$("$bin" eval "${Q[@]}" --config /dev/null --mode vector)
grep -q '^embedder   hashed:' <<<"$hashed" || fail "the hashed embedder is not named"
# and its figures are its own: "product 7" finds "product 7 shoe" by its words,
# the mock's vectors (a hash of the whole text) do not
h=$(sed -n 's/^NDCG@10 *//p' <<<"$hashed")
m=$(sed -n 's/^NDCG@10 *//p' <<<"$out")
awk -v h="$h" -v m="$m" 'BEGIN { exit !(h > m + 0.3) }' ||
    fail "hashed NDCG@10 $h is not well above the mock's $m: the same vectors?"
[ "$(requests)" = 5 ] || fail "the hashed run reached the mock"

# a provider that is gone: exit 1 and the cause
kill "$mock_pid"
wait "$mock_pid" 2>/dev/null || true
mock_pid=
st=0
err=$("$bin" eval "${Q[@]}" --config "$tmp/embed.yaml" 2>&1 >/dev/null) || st=$?
[ "$st" = 1 ] || fail "exit $st with the provider gone, expected 1"
grep -qi 'embed' <<<"$err" || fail "the message does not say embedding failed: $err"
echo "test_eval_embed: ok"

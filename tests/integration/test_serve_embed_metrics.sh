#!/usr/bin/env bash
# The embedding metrics of sift serve and the query-vector cache, against
# bench/mock_embed: the catalog's embedding (its first request answered 503,
# so retried once) shows in sift_embed_request_seconds, sift_embed_texts_total
# and sift_embed_retries_total; a search misses the cache and embeds its
# query; the same search again is a hit and sends the provider nothing.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
mock="$SIFT_BUILD_DIR/mock_embed"
[ -x "$mock" ] || { echo "no $mock: skipped"; exit 77; }
load_sample products inventory prices
unset OPENAI_API_KEY SIFT_EMBED_PROVIDER SIFT_EMBED_MODEL SIFT_EMBED_API_KEY

"$mock" --dims 32 --fail 1 >"$tmp/mock.out" 2>"$tmp/mock.err" &
mock_pid=$!
extra_pids+=("$mock_pid")
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
# metric NAME_WITH_LABELS: its value in a fresh scrape (0 when absent)
metric() {
    curl -sf "$url/metrics" | awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }'
}

cat >"$tmp/sift.yaml" <<YAML
embed:
  dimensions: 32
  batch_size: 2048
  concurrency: 1
  query_cache: 64
YAML
products=$(wc -l <"$sample/products.jsonl")
export SIFT_EMBED_BASE_URL="$base"
# one worker: the cache is per loop, so both searches must meet the same one
SIFT_LOG_LEVEL=info "$sift" serve --config "$tmp/sift.yaml" --port 0 --workers 1 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
url="http://127.0.0.1:$port"

curl -sf "$url/metrics" >"$tmp/m0"
for fam in sift_embed_request_seconds sift_embed_texts_total sift_embed_retries_total \
    sift_embed_query_cache_total; do
    grep -q "^# TYPE $fam " "$tmp/m0" || fail "no $fam family on /metrics"
done
want=$(( (products + 2047) / 2048 + 1 ))
at_start=$(requests)
[ "$at_start" = "$want" ] || fail "the catalog took $at_start requests, expected $want (one retried)"
[ "$(metric sift_embed_retries_total)" = 1 ] || fail "retries: $(metric sift_embed_retries_total)"
[ "$(metric sift_embed_texts_total)" = "$products" ] ||
    fail "texts: $(metric sift_embed_texts_total), expected $products"
ok0=$(metric 'sift_embed_request_seconds_count{outcome="ok"}')
[ "$ok0" -ge 1 ] || fail "the catalog's call is not in sift_embed_request_seconds"
[ "$(metric 'sift_embed_request_seconds_count{outcome="error"}')" = 0 ] || fail "an error counted"
[ "$(metric 'sift_embed_query_cache_total{result="miss"}')" = 0 ] || fail "a lookup before a query"

q='{"query":"Find Nike running shoes size 42 in stock in Hanoi"}'
curl -sfN -X POST "$url/v1/search" -d "$q" >"$tmp/sse1" || fail "first search"
grep -q '^event: products' "$tmp/sse1" || fail "no products event"
after1=$(requests)
[ "$after1" -gt "$at_start" ] || fail "the query was not embedded through the provider"
miss1=$(metric 'sift_embed_query_cache_total{result="miss"}')
[ "$miss1" -ge 1 ] || fail "no cache miss counted for the first search"
[ "$(metric 'sift_embed_query_cache_total{result="hit"}')" = 0 ] || fail "a hit on a cold cache"
texts1=$(metric sift_embed_texts_total)
[ "$texts1" = $((products + miss1)) ] || fail "texts after one search: $texts1"
[ "$(metric 'sift_embed_request_seconds_count{outcome="ok"}')" = $((ok0 + miss1)) ] ||
    fail "the query's call is not in sift_embed_request_seconds"

curl -sfN -X POST "$url/v1/search" -d "$q" >"$tmp/sse2" || fail "second search"
grep -q '^event: products' "$tmp/sse2" || fail "no products event the second time"
[ "$(requests)" = "$after1" ] || fail "the repeated query reached the provider again"
hit=$(metric 'sift_embed_query_cache_total{result="hit"}')
[ "$hit" = "$miss1" ] || fail "hits $hit after the same search, expected $miss1"
[ "$(metric 'sift_embed_query_cache_total{result="miss"}')" = "$miss1" ] || fail "new misses"
[ "$(metric sift_embed_texts_total)" = "$texts1" ] || fail "cache hits counted as texts embedded"
# the same products both times
diff <(grep '^event: products' -A1 "$tmp/sse1" | grep '^data' | sed 's/"run_id":"[^"]*",//; s/"seq":[0-9]*,//') \
    <(grep '^event: products' -A1 "$tmp/sse2" | grep '^data' | sed 's/"run_id":"[^"]*",//; s/"seq":[0-9]*,//') ||
    fail "the cached vector gave other products"

kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"
pid=
echo "test_serve_embed_metrics: ok"

#!/usr/bin/env bash
# sift serve with the OpenAI-compatible embedding provider, end to end: the
# catalog is embedded through a real HTTP server (bench/mock_embed) at start,
# in batches, with the bearer key; a search embeds its query through the same
# server and returns products; the key never reaches the log; a server that
# refuses the key stops sift serve at start with a message naming the cause.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
mock="$SIFT_BUILD_DIR/mock_embed"
[ -x "$mock" ] || { echo "no $mock: skipped"; exit 77; }
load_sample products inventory prices
unset OPENAI_API_KEY SIFT_EMBED_PROVIDER SIFT_EMBED_MODEL

"$mock" --dims 64 >"$tmp/mock.out" 2>"$tmp/mock.err" &
mock_pid=$!
extra_pids+=("$mock_pid")
for _ in $(seq 100); do [ -s "$tmp/mock.out" ] && break; sleep 0.1; done
base=$(head -1 "$tmp/mock.out")
[ -n "$base" ] || fail "mock_embed did not start"
# asks the mock for its request count (it prints one JSON line per SIGUSR1)
requests() {
    local n
    n=$(wc -l <"$tmp/mock.out")
    kill -USR1 "$mock_pid"
    for _ in $(seq 50); do [ "$(wc -l <"$tmp/mock.out")" -gt "$n" ] && break; sleep 0.1; done
    tail -1 "$tmp/mock.out" | sed 's/.*"requests":\([0-9]*\).*/\1/'
}

cat >"$tmp/sift.yaml" <<YAML
embed:
  dimensions: 64
  batch_size: 100
  concurrency: 3
YAML
products=$(wc -l <"$sample/products.jsonl")
export SIFT_EMBED_BASE_URL="$base" SIFT_EMBED_API_KEY="sk-e2e-secret"
SIFT_LOG_LEVEL=debug "$sift" serve --config "$tmp/sift.yaml" --port 0 --workers 2 \
    >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
url="http://127.0.0.1:$port"
at_start=$(requests)
want=$(( (products + 99) / 100 ))
[ "$at_start" = "$want" ] || fail "catalog of $products products: $at_start requests, expected $want"

q='{"query":"Find Nike running shoes size 42 in stock in Hanoi, Da Nang or HCMC?"}'
curl -sfN -X POST "$url/v1/search" -d "$q" >"$tmp/sse" || fail "search request"
grep -q '^event: products' "$tmp/sse" || fail "no products event"
# one grep, no pipe: under pipefail, `grep ... | grep -q` fails when grep -q
# exits at its first match while the first grep still writes (SIGPIPE), which
# the 6 kB of data lines here hit about 1 run in 15
grep -q '^data: .*NIKE' "$tmp/sse" || fail "no Nike product in the results"
after=$(requests)
[ "$after" -gt "$at_start" ] || fail "the query was not embedded through the provider"
kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"
pid=
grep -q 'sk-e2e-secret' "$tmp/serve.log" && fail "the API key is in the log"

# a wrong dimension stops the start with the cause
sed -i 's/dimensions: 64/dimensions: 32/' "$tmp/sift.yaml"
if "$sift" serve --config "$tmp/sift.yaml" --port 0 >"$tmp/serve2.log" 2>&1; then
    fail "sift serve started with vectors of the wrong length"
fi
grep -q 'embedding has 64 numbers, expected 32' "$tmp/serve2.log" ||
    fail "no clear message: $(tail -2 "$tmp/serve2.log")"
grep -q 'sk-e2e-secret' "$tmp/serve2.log" && fail "the API key is in the log"
echo "test_serve_embed: ok"

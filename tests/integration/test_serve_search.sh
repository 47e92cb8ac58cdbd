#!/usr/bin/env bash
# sift serve end to end: POST /v1/search streams the run events over SSE (and
# as one JSON body), sessions continue across requests, bad requests get JSON
# errors, SIGTERM shuts the server down cleanly.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
load_sample products inventory prices

SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 2 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
url="http://127.0.0.1:$port"

curl -sf "$url/healthz" | grep -q '"ok"' || fail "healthz"

q='{"query":"Find Nike running shoes size 42 in stock in Hanoi, Da Nang or HCMC?","session_id":"t-1"}'
curl -sfN -X POST "$url/v1/search" -d "$q" >"$tmp/sse" || fail "search request"
grep -q '^event: run.started' "$tmp/sse" || fail "no run.started"
[ "$(grep -c '^event: tool.started' "$tmp/sse")" = 5 ] || fail "expected 5 tool.started events"
grep -q '^event: products' "$tmp/sse" || fail "no products event"
[ "$(grep -c '^event: token' "$tmp/sse")" -gt 10 ] || fail "the answer was not streamed"
grep -q '^event: answer' "$tmp/sse" || fail "no answer event"
tail -3 "$tmp/sse" | grep -q '^event: run.finished' || fail "the stream does not end with run.finished"
# one grep, no pipe (`grep | grep -q` under pipefail fails by SIGPIPE)
grep -q '^data: .*Da Nang (DAD)' "$tmp/sse" || fail "the answer lacks Da Nang"

# the session continues, in JSON mode
curl -sf -X POST -H 'Accept: application/json' "$url/v1/search" \
    -d '{"query":"what about size 43?","session_id":"t-1"}' >"$tmp/json" || fail "json request"
grep -q '"answer":"I found .*size 43' "$tmp/json" || fail "follow-up answer: $(head -c 300 "$tmp/json")"
grep -q '"error":null' "$tmp/json" || fail "json error field"

# errors are JSON with a status
code=$(curl -s -o "$tmp/err" -w '%{http_code}' -X POST "$url/v1/search" -d '{"q":1}')
[ "$code" = 400 ] && grep -q '"code":"invalid_request"' "$tmp/err" || fail "bad body: $code $(cat "$tmp/err")"
code=$(curl -s -o "$tmp/err" -w '%{http_code}' -X POST "$url/v1/search" -d 'not json')
[ "$code" = 400 ] || fail "non-JSON body: $code"
long=$(head -c 3000 /dev/zero | tr '\0' a)
code=$(curl -s -o "$tmp/err" -w '%{http_code}' -X POST "$url/v1/search" -d "{\"query\":\"$long\"}")
[ "$code" = 413 ] || fail "long query: $code"
code=$(curl -s -o "$tmp/err" -w '%{http_code}' "$url/v1/nothing")
[ "$code" = 404 ] && grep -q '"error"' "$tmp/err" || fail "404: $code"

kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"
pid=
grep -q 'sift stopped' "$tmp/serve.log" || fail "no clean stop in the log"
echo "test_serve_search: ok"

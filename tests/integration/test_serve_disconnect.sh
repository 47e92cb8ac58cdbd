#!/usr/bin/env bash
# A client that goes away mid-run cancels the run: the model request in flight
# is aborted and no upstream call starts afterwards. sift talks to the mock LLM
# (bench/mock_llm) over the OpenAI protocol; its first answer takes 1.5 s.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
mock="$SIFT_BUILD_DIR/mock_llm"
load_sample products

"$mock" --port 0 --ttft-ms 1500 --scenario seed >"$tmp/mock.out" 2>"$tmp/mock.err" &
extra_pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/mock.out" ] && break; sleep 0.1; done
mport=$(head -1 "$tmp/mock.out")
[ -n "$mport" ] || fail "the mock LLM did not start"
stats() { curl -sf "http://127.0.0.1:$mport/stats"; }
field() { stats | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

SIFT_LLM_BASE_URL="http://127.0.0.1:$mport/v1" SIFT_LLM_MODEL=mock SIFT_LOG_LEVEL=info \
    "$sift" serve --port 0 --workers 1 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "sift did not start"

# the client gives up after 0.4 s, while the model is still thinking
curl -s -N --max-time 0.4 -X POST "http://127.0.0.1:$port/v1/search" \
    -d '{"query":"Nike running shoes size 42 in Hanoi"}' >"$tmp/partial" || true
grep -q '^event: run.started' "$tmp/partial" || fail "the stream did not start"

# the server notices, cancels the run, and the model request is aborted
for _ in $(seq 50); do [ "$(field disconnects)" -ge 1 ] && break; sleep 0.1; done
[ "$(field disconnects)" -ge 1 ] || fail "the model request was not aborted: $(stats)"
[ "$(field requests)" = 1 ] || fail "expected 1 model request: $(stats)"

# had the run gone on, the seed answer's tool step and second model call
# would start by now (1.5 s of TTFT)
sleep 2.5
[ "$(field requests)" = 1 ] || fail "a model call started after the client left: $(stats)"
grep -q 'client disconnected' "$tmp/serve.log" || fail "no cancellation in the log"
echo "test_serve_disconnect: ok"

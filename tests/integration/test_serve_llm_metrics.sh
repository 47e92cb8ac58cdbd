#!/usr/bin/env bash
# /metrics has one observation per model request: sift_llm_request_seconds
# (by outcome) and sift_llm_first_token_seconds, measured around each call to
# the model. Against the mock LLM (bench/mock_llm, OpenAI protocol) with a
# 300 ms time to first token, every request lands at or above 0.25 s; its
# request count must equal the mock's; a model that cannot be reached counts
# as outcome="error". With the offline planner, one request per run step.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
mock="$SIFT_BUILD_DIR/mock_llm"
load_sample products inventory prices

"$mock" --port 0 --ttft-ms 300 --scenario seed >"$tmp/mock.out" 2>"$tmp/mock.err" &
extra_pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/mock.out" ] && break; sleep 0.1; done
mport=$(head -1 "$tmp/mock.out")
[ -n "$mport" ] || fail "the mock LLM did not start"
mock_requests() { curl -sf "http://127.0.0.1:$mport/stats" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p'; }

# metric NAME_AND_LABELS: its value in $tmp/metrics (0 when absent)
metric() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$tmp/metrics"; }

SIFT_LLM_BASE_URL="http://127.0.0.1:$mport/v1" SIFT_LLM_MODEL=mock SIFT_LOG_LEVEL=info \
    "$sift" serve --port 0 --workers 1 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "sift did not start"
url="http://127.0.0.1:$port"
curl -sf -X POST -H 'Accept: application/json' "$url/v1/search" \
    -d '{"query":"Nike running shoes size 42 in Hanoi"}' >"$tmp/run" || fail "search"
grep -q '"error":null' "$tmp/run" || fail "the run failed: $(head -c 300 "$tmp/run")"
curl -sf "$url/metrics" >"$tmp/metrics" || fail "/metrics"
n=$(mock_requests)
[ "$n" -ge 2 ] || fail "expected a tool step and an answer: $n model requests"
[ "$(metric 'sift_llm_request_seconds_count{outcome="ok"}')" = "$n" ] ||
    fail "request count $(metric 'sift_llm_request_seconds_count{outcome="ok"}') != mock's $n"
[ "$(metric 'sift_llm_request_seconds_bucket{outcome="ok",le="0.25"}')" = 0 ] ||
    fail "a 300 ms request observed under 0.25 s: $(grep llm_request "$tmp/metrics")"
[ "$(metric sift_llm_first_token_seconds_count)" = "$n" ] || fail "first-token count"
[ "$(metric 'sift_llm_first_token_seconds_bucket{le="0.25"}')" = 0 ] ||
    fail "a 300 ms first token observed under 0.25 s"
[ "$(metric 'sift_llm_first_token_seconds_bucket{le="0.5"}')" = "$n" ] ||
    fail "first tokens over 0.5 s: $(grep first_token "$tmp/metrics")"
kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"

# a model that cannot be reached: each attempt fails, the request counts as an error
SIFT_LLM_BASE_URL="http://127.0.0.1:9/v1" SIFT_LOG_LEVEL=info \
    "$sift" serve --port 0 --workers 1 >"$tmp/serve2.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve2.log") || fail "sift did not start"
curl -s -X POST -H 'Accept: application/json' "http://127.0.0.1:$port/v1/search" \
    -d '{"query":"hi"}' >"$tmp/run" || true
curl -sf "http://127.0.0.1:$port/metrics" >"$tmp/metrics" || fail "/metrics"
[ "$(metric 'sift_llm_request_seconds_count{outcome="error"}')" = 1 ] ||
    fail "unreachable model: $(grep llm_request_seconds_count "$tmp/metrics")"
[ "$(metric sift_llm_first_token_seconds_count)" = 0 ] || fail "a first token from nowhere"
kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"

# the offline planner: one model request per step of the run
SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 1 >"$tmp/serve3.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve3.log") || fail "sift did not start"
curl -sf -X POST -H 'Accept: application/json' "http://127.0.0.1:$port/v1/search" \
    -d '{"query":"Nike running shoes size 42, in stock in Hanoi?"}' >"$tmp/run" || fail "search"
steps=$(sed -n 's/.*"event":"run.finished","data":{[^}]*"steps":\([0-9]*\).*/\1/p' "$tmp/run")
[ -n "$steps" ] && [ "$steps" -ge 2 ] || fail "steps: '$steps'"
curl -sf "http://127.0.0.1:$port/metrics" >"$tmp/metrics" || fail "/metrics"
[ "$(metric 'sift_llm_request_seconds_count{outcome="ok"}')" = "$steps" ] ||
    fail "offline: $(metric 'sift_llm_request_seconds_count{outcome="ok"}') requests, $steps steps"
kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"
pid=
echo "test_serve_llm_metrics: ok"

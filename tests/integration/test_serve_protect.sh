#!/usr/bin/env bash
# sift serve protection and metrics: bearer auth from SIFT_API_KEYS (401 with
# WWW-Authenticate, open health checks), the per-key token bucket (429 with
# Retry-After), the cap on concurrent runs (503 with Retry-After), GET /metrics
# in Prometheus text with the run counters, and no
# key in the log.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
load_sample products inventory prices
# one run per second per key, no burst: two quick requests with one key
# always meet the limit; one run at a time, and answers slowed to 50 ms a
# word so that a run lasts seconds
cat >sift.yaml <<'EOF'
server:
  rate_limit_rps: 1
  rate_burst: 1
  max_runs: 1
EOF
k1=key-one-secret-1111
k2=key-two-secret-2222
k3=key-three-secret-3333
k4=key-four-secret-4444
k5=key-five-secret-5555
SIFT_OFFLINE_TOKEN_DELAY_MS=50 SIFT_API_KEYS="$k1,$k2,$k3,$k4,$k5" SIFT_LOG_LEVEL=debug \
    "$sift" serve --port 0 --workers 2 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
url="http://127.0.0.1:$port"
q='{"query":"Find Nike running shoes size 42 in stock in Hanoi, Da Nang or HCMC?"}'

# health checks stay open
curl -sf "$url/healthz" | grep -q '"ok"' || fail "healthz"
curl -sf "$url/readyz" | grep -q '"ok"' || fail "readyz"

# no key, a wrong key, a wrong scheme: 401 with a JSON error and WWW-Authenticate
for auth in "" "Authorization: Bearer wrong" "Authorization: Bearer ${k1}x" \
    "Authorization: Basic $k1"; do
    code=$(curl -s -D "$tmp/h" -o "$tmp/err" -w '%{http_code}' -X POST ${auth:+-H "$auth"} \
        "$url/v1/search" -d "$q")
    [ "$code" = 401 ] || fail "auth '$auth': status $code"
    grep -q '"code":"unauthorized"' "$tmp/err" || fail "401 body: $(cat "$tmp/err")"
    grep -qi '^www-authenticate: Bearer' "$tmp/h" || fail "no WWW-Authenticate"
done
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/metrics")
[ "$code" = 401 ] || fail "/metrics without a key: $code"

# the right key (either one; scheme case-insensitive) runs the agent
curl -sfN -X POST -H "Authorization: Bearer $k1" "$url/v1/search" -d "$q" >"$tmp/sse" ||
    fail "search with a key"
tail -3 "$tmp/sse" | grep -q '^event: run.finished' || fail "the run did not finish"

# rate limit, per key: k2's bucket is still full, its second quick request is refused
code=$(curl -s -o "$tmp/err" -w '%{http_code}' -X POST -H "authorization: bearer $k2" \
    "$url/v1/search" -d '{}')
[ "$code" = 400 ] || fail "first request with k2: $code $(cat "$tmp/err")"
code=$(curl -s -D "$tmp/h" -o "$tmp/err" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $k2" "$url/v1/search" -d '{}')
[ "$code" = 429 ] || fail "second quick request with k2: $code"
grep -q '"code":"rate_limited"' "$tmp/err" || fail "429 body: $(cat "$tmp/err")"
grep -qi '^retry-after: [1-9]' "$tmp/h" || fail "429 without Retry-After"

# admission: while one run streams, the next is refused at once with 503
curl -sfN -X POST -H "Authorization: Bearer $k3" "$url/v1/search" -d "$q" >"$tmp/long" &
long=$!
for _ in $(seq 100); do
    grep -q '^event: run.started' "$tmp/long" 2>/dev/null && break
    sleep 0.05
done
grep -q '^event: run.started' "$tmp/long" || fail "the long run did not start"
code=$(curl -s -D "$tmp/h" -o "$tmp/err" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $k4" "$url/v1/search" -d "$q")
[ "$code" = 503 ] || fail "a run over max_runs: $code"
grep -q '"code":"busy"' "$tmp/err" || fail "503 body: $(cat "$tmp/err")"
grep -qi '^retry-after: 1' "$tmp/h" || fail "503 without Retry-After: 1"
! grep -q '^event: run.finished' "$tmp/long" || fail "the long run was not long enough"
wait "$long" || fail "the long run failed"
tail -3 "$tmp/long" | grep -q '^event: run.finished' || fail "the long run did not finish"
# the slot is free again
# (the body to a file first: `curl | grep -q` fails under pipefail by SIGPIPE)
curl -sf -X POST -H "Authorization: Bearer $k5" -H 'Accept: application/json' "$url/v1/search" \
    -d "$q" >"$tmp/after" || fail "a run after the slot was released"
grep -q '"error":null' "$tmp/after" || fail "a run after the slot was released: $(head -c 300 "$tmp/after")"

# metrics
curl -sf -H "Authorization: Bearer $k1" -D "$tmp/h" "$url/metrics" >"$tmp/metrics" ||
    fail "/metrics with a key"
m="$tmp/metrics"
grep -qi '^content-type: text/plain; version=0.0.4' "$tmp/h" || fail "metrics content type"
grep -qx 'sift_runs_started_total 3' "$m" || fail "runs_started: $(grep started "$m")"
grep -qx 'sift_runs_finished_total{reason="ok"} 3' "$m" || fail "runs finished ok"
grep -qx 'sift_runs_finished_total{reason="error"} 0' "$m" || fail "runs finished error"
grep -qx 'sift_active_runs 0' "$m" || fail "active runs"
grep -qx 'sift_http_rejected_total{reason="auth"} 5' "$m" || fail "rejected auth"
grep -qx 'sift_http_rejected_total{reason="rate"} 1' "$m" || fail "rejected rate"
grep -qx 'sift_http_rejected_total{reason="busy"} 1' "$m" || fail "rejected busy"
grep -qx 'sift_llm_ttft_seconds_count 3' "$m" || fail "ttft count"
grep -qx 'sift_run_duration_seconds_count 3' "$m" || fail "run duration count"
grep -qx 'sift_run_duration_seconds_bucket{le="+Inf"} 3' "$m" || fail "run duration +Inf"
grep -q '^sift_tool_seconds_count{tool="[a-z_]*"} [1-9]' "$m" || fail "tool latency by tool"
grep -q '^sift_loop_lag_seconds_count [0-9]' "$m" || fail "loop lag"
grep -q '^sift_http_requests_total [1-9]' "$m" || fail "requests total"
# every sample line belongs to a family announced by HELP and TYPE
for fam in $(grep '^# TYPE' "$m" | cut -d' ' -f3); do
    grep -q "^# HELP $fam " "$m" || fail "no HELP for $fam"
done
bad=$(grep -v '^#' "$m" | grep -cvE '^[a-z_]+(\{[a-z_]+="[^"]*"(,le="[^"]*")?\})? -?[0-9.e+Inf-]+$' ||
    true)
[ "$bad" = 0 ] || fail "malformed metric lines: $(grep -v '^#' "$m" | head -3)"

kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"
pid=
# no secret in the log
! grep -q -e "$k1" -e "$k2" -e "$k3" -e "$k4" -e "$k5" "$tmp/serve.log" ||
    fail "an API key appears in the log"
echo "test_serve_protect: ok"

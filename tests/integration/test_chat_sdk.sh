#!/usr/bin/env bash
# The official openai npm SDK against sift serve's /v1/chat/completions and
# /v1/models (offline planner, sample catalog, an API key): see
# tests/e2e/chat_sdk.test.js. Skipped (exit 77) only when node or the SDK is
# not installed (scripts/install-deps.sh installs both).
set -euo pipefail
e2e="$SIFT_SOURCE_DIR/tests/e2e"
if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node is not installed (scripts/install-deps.sh installs it)"
    exit 77
fi
if [ ! -f "$e2e/node_modules/openai/package.json" ]; then
    echo "SKIP: the openai SDK is not in tests/e2e/node_modules (run scripts/install-deps.sh)"
    exit 77
fi
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
load_sample products inventory prices

key=sdk-test-key-5678
SIFT_API_KEYS=$key SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 2 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
# a second server whose runs all fail: a 1 s deadline, answers at 100 ms a word
printf 'agent:\n  deadline_ms: 1000\n' >"$tmp/slow.yaml"
SIFT_OFFLINE_TOKEN_DELAY_MS=100 SIFT_LOG_LEVEL=info "$sift" serve --config "$tmp/slow.yaml" \
    --port 0 --workers 1 >"$tmp/slow.log" 2>&1 &
slow_pid=$!
extra_pids+=($slow_pid)
slow=$(wait_for_port "$tmp/slow.log") || fail "the slow server did not start"

node "$e2e/chat_sdk.test.js" "http://127.0.0.1:$port/v1" "$key" "http://127.0.0.1:$slow/v1" ||
    fail "the SDK checks failed"
grep -q "$key" "$tmp/serve.log" && fail "the API key is in the log"
# clean exits (under the sanitizers: nothing leaked)
kill -TERM "$pid" "$slow_pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM: $(tail -5 "$tmp/serve.log")"
wait "$slow_pid" || fail "the slow sift serve exited with $? after SIGTERM: $(tail -5 "$tmp/slow.log")"
pid=
extra_pids=()
echo "test_chat_sdk: ok"

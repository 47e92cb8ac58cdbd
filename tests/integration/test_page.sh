#!/usr/bin/env bash
# The search page in headless chromium (tests/e2e/page.test.js, playwright-core):
# the answer streams in, the tool timeline, product cards with stock per
# warehouse and price, a phone-sized screen, keyboard-only use, Esc, errors,
# the API key. Two servers with the sample catalog and the offline planner:
# one open, answering at 40 ms a word so the streaming can be watched, one
# with an API key, and one whose runs miss their deadline. Skipped (exit 77) only when chromium or the node modules
# are missing (scripts/install-deps.sh installs both).
set -euo pipefail
e2e="$SIFT_SOURCE_DIR/tests/e2e"
chromium=${CHROMIUM:-/usr/bin/chromium}
if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node is not installed (scripts/install-deps.sh installs it)"
    exit 77
fi
if [ ! -x "$chromium" ]; then
    echo "SKIP: no chromium at $chromium (scripts/install-deps.sh installs Debian's)"
    exit 77
fi
if [ ! -f "$e2e/node_modules/playwright-core/package.json" ]; then
    echo "SKIP: playwright-core is not in tests/e2e/node_modules (run scripts/install-deps.sh)"
    exit 77
fi
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
load_sample products inventory prices

SIFT_OFFLINE_TOKEN_DELAY_MS=40 SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 2 \
    >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
key=page-test-key-9090
SIFT_API_KEYS=$key SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 1 >"$tmp/keyed.log" 2>&1 &
keyed_pid=$!
extra_pids+=($keyed_pid)
keyed=$(wait_for_port "$tmp/keyed.log") || fail "the server with a key did not start"
# a third server whose runs all fail: a 300 ms deadline, answers at 50 ms a word
printf 'agent:\n  deadline_ms: 300\n' >"$tmp/slow.yaml"
SIFT_OFFLINE_TOKEN_DELAY_MS=50 SIFT_LOG_LEVEL=info "$sift" serve --config "$tmp/slow.yaml" \
    --port 0 --workers 1 >"$tmp/slow.log" 2>&1 &
slow_pid=$!
extra_pids+=($slow_pid)
slow=$(wait_for_port "$tmp/slow.log") || fail "the slow server did not start"

# chromium keeps its profile and crash dumps under HOME: keep them in $tmp
HOME="$tmp" CHROMIUM="$chromium" node "$e2e/page.test.js" "http://127.0.0.1:$port" \
    "http://127.0.0.1:$keyed" "$key" "http://127.0.0.1:$slow" || fail "the page checks failed"
grep -q "$key" "$tmp/keyed.log" && fail "the API key is in the log"
kill -TERM "$pid" "$keyed_pid" "$slow_pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM: $(tail -5 "$tmp/serve.log")"
wait "$keyed_pid" || fail "the keyed sift serve exited with $? after SIGTERM"
wait "$slow_pid" || fail "the slow sift serve exited with $? after SIGTERM"
pid=
extra_pids=()
echo "test_page: ok"

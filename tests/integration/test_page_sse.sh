#!/usr/bin/env bash
# The search page's SSE parser (web/app.js) gives the same events for any
# split of the stream: tests/e2e/sse_parser.test.js under node, no browser
# needed. Skipped (exit 77) only when node is not installed.
set -euo pipefail
if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node is not installed (scripts/install-deps.sh installs it)"
    exit 77
fi
node "$SIFT_SOURCE_DIR/tests/e2e/sse_parser.test.js" "$SIFT_SOURCE_DIR/web/app.js"

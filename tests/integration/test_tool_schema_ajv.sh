#!/usr/bin/env bash
# The generated tool schemas, checked by an independent validator: ajv (npm)
# compiles each golden schema in strict mode, and judges the shared argument
# cases the same way the C decoder's unit test expects. See
# tests/e2e/check_tool_schemas.js.
set -u
src=${SIFT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node is not installed (scripts/install-deps.sh installs it)"
    exit 0
fi
if [ ! -d "$src/tests/e2e/node_modules/ajv" ]; then
    echo "SKIP: ajv is not installed in tests/e2e/node_modules (run scripts/install-deps.sh)"
    exit 0
fi
exec node "$src/tests/e2e/check_tool_schemas.js" "$src/tests/unit/golden"

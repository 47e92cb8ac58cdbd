#!/usr/bin/env bash
# A tool function whose signature does not match its argument struct must not
# compile. Compiles tests/compile_fail/tool_signature.c with the project's
# warning flags: the control variant must compile, and each mismatched variant
# must fail with SIFT_TOOL_DEFINE's own diagnostic (so the test cannot pass
# because of some unrelated error).
set -u
src=${SIFT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
file="$src/tests/compile_fail/tool_signature.c"
flags=(-std=gnu11 -fsyntax-only -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
       -Wstrict-prototypes -Wmissing-prototypes -D_GNU_SOURCE -I"$src/include"
       $(pkg-config --cflags libuv libcjson 2>/dev/null))
expected="must be declared as: void lookup(sift_tool_job \*job, const struct lookup_args \*args)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failures=0

for compiler in cc clang; do
    command -v "$compiler" >/dev/null 2>&1 || { echo "SKIP: $compiler not installed"; continue; }
    if "$compiler" "${flags[@]}" -DVARIANT=0 "$file" >"$log" 2>&1; then
        echo "ok: $compiler: control variant compiles"
    else
        echo "FAIL: $compiler: the control variant does not compile:"
        cat "$log"
        failures=$((failures + 1))
        continue
    fi
    for v in 1 2 3 4 5; do
        if "$compiler" "${flags[@]}" -DVARIANT=$v "$file" >"$log" 2>&1; then
            echo "FAIL: $compiler: variant $v compiled, but its signature is wrong"
            failures=$((failures + 1))
        elif grep -q "$expected" "$log"; then
            echo "ok: $compiler: variant $v rejected with the expected diagnostic"
        else
            echo "FAIL: $compiler: variant $v failed without the expected diagnostic:"
            cat "$log"
            failures=$((failures + 1))
        fi
    done
done

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "PASS"

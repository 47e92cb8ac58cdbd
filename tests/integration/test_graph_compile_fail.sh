#!/usr/bin/env bash
# A graph node or router whose signature does not match the graph's state type
# must not compile. Compiles tests/compile_fail/graph_signature.c with the
# project's warning flags: the control variant must compile, and each
# mismatched variant must fail with the macro's own diagnostic (so the test
# cannot pass because of some unrelated error).
set -u
src=${SIFT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
file="$src/tests/compile_fail/graph_signature.c"
flags=(-std=gnu11 -fsyntax-only -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
       -Wstrict-prototypes -Wmissing-prototypes -D_GNU_SOURCE
       -I"$src/include" $(pkg-config --cflags libuv libcjson 2>/dev/null))
node_expected="graph node function plan must be declared as: void plan(sift_graph_node_run \*run, struct state \*state)"
router_expected="graph router route must be declared as: int route(const struct state \*state, void \*udata, const char \*\*out, int max)"
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
    for v in 1 2 3 4 5 6 7; do
        expected=$node_expected
        [ "$v" -ge 6 ] && expected=$router_expected
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

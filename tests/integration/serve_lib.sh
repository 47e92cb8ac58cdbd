# Shared by the test_serve_*.sh tests (sourced, not run): a temp directory with
# the store, cleanup, failure reports, loading the sample catalog and waiting
# for `sift serve --port 0` to say which port it took.
sift="$SIFT_BUILD_DIR/sift"
sample="$SIFT_SOURCE_DIR/catalog/sample"
tmp=$(mktemp -d)
pid=           # the sift server; cleared once a test has stopped it itself
extra_pids=()  # other background processes of the test
cleanup() {
    # || true: under set -e a server that has already exited must not stop
    # the cleanup before the other processes and the directory
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    for p in "${extra_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # a PostgreSQL cluster (pg_sample) is stopped before its directory goes
    [ -z "${cluster:-}" ] || bash "$cluster" destroy "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/serve.log" ] && tail -5 "$tmp/serve.log"; exit 1; }
cd "$tmp"
unset SIFT_LLM_BASE_URL SIFT_LLM_PROVIDER
export SIFT_DB="$tmp/sift.db"

# load_sample KIND...: loads catalog/sample/KIND.jsonl into $SIFT_DB
load_sample() {
    for kind in "$@"; do
        "$sift" ingest --quiet --kind "$kind" "$sample/$kind.jsonl" 2>/dev/null
    done
}

# wait_for_port LOG: prints the port sift serve logged in LOG; fails after 10 s
wait_for_port() {
    local p
    for _ in $(seq 100); do
        p=$(sed -n 's/.*serving on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' "$1")
        [ -n "$p" ] && { echo "$p"; return 0; }
        sleep 0.1
    done
    return 1
}

# pg_sample: a throwaway PostgreSQL cluster under $tmp/pg (destroyed by
# cleanup; exits 77 without PostgreSQL server binaries) holding the sample
# catalog, which also goes into the SQLite store (load_sample). Sets cluster
# and pgurl.
pg_sample() {
    cluster="$SIFT_SOURCE_DIR/tests/support/pg_cluster.sh"
    chmod 755 "$tmp" # under root the cluster runs as "postgres", who must reach it
    local st
    set +e
    pgurl=$(bash "$cluster" start "$tmp/pg" 2>"$tmp/cluster.err")
    st=$?
    set -e
    if [ "$st" = 77 ]; then
        echo "SKIP: no PostgreSQL server binaries"
        exit 77
    fi
    [ "$st" = 0 ] || fail "the throwaway cluster did not start: $(cat "$tmp/cluster.err")"
    "$sift" migrate --db "$pgurl" >/dev/null || fail "migrate"
    load_sample products inventory prices
    local kind
    for kind in products inventory prices; do
        "$sift" ingest --quiet --db "$pgurl" --kind "$kind" "$sample/$kind.jsonl" 2>/dev/null ||
            fail "ingest $kind into PostgreSQL"
    done
}

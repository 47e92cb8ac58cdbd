#!/usr/bin/env bash
# sift serve on PostgreSQL with the asynchronous pool: the same agent run
# (search, then check_inventory and get_price on each worker loop's pool)
# gives the same answer as on SQLite for the same sample catalog; /metrics
# shows the pools (sift_pg_pool_*); SIGTERM closes every worker's pool and the
# server exits 0. Exits 77 (skipped) without PostgreSQL server binaries.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
pg_sample # sets cluster and pgurl

SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 1 >"$tmp/sqlite.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/sqlite.log") || fail "the SQLite server did not start"
SIFT_DB="$pgurl" SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 2 >"$tmp/pg.log" 2>&1 &
pg_pid=$!
extra_pids+=($pg_pid)
pgport=$(wait_for_port "$tmp/pg.log") || fail "the PostgreSQL server did not start: $(tail -3 "$tmp/pg.log")"

# answer PORT QUERY: the run's answer text (JSON mode)
answer() {
    curl -sf -X POST -H 'Accept: application/json' "http://127.0.0.1:$1/v1/search" -d "$2" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["error"] or j["answer"])'
}
for q in "Find Nike running shoes size 42 in stock in Hanoi, Da Nang or HCMC?" \
    "is NIKE-PEG40-42 in stock in Hanoi?" "how much is NIKE-PEG40-43 in USD?"; do
    body=$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$q")
    a=$(answer "$port" "$body") || fail "SQLite: $q"
    # several requests, so both worker loops are likely to open a pool
    for _ in 1 2 3 4; do
        b=$(answer "$pgport" "$body") || fail "PostgreSQL: $q"
        [ "$a" = "$b" ] || fail "answers differ for \"$q\":
  SQLite:     $a
  PostgreSQL: $b"
    done
done
[[ "$b" == *USD* ]] || fail "no USD price in: $b"

# /metrics: the pools, summed over workers, refreshed every 100 ms
conns=0
for _ in $(seq 30); do
    curl -sf "http://127.0.0.1:$pgport/metrics" >"$tmp/metrics" || fail "metrics"
    conns=$(sed -n 's/^sift_pg_pool_connections \([0-9]*\)$/\1/p' "$tmp/metrics")
    [ "${conns:-0}" -ge 1 ] && break
    sleep 0.1
done
[ "${conns:-0}" -ge 1 ] || fail "no pool connection in /metrics: $(grep sift_pg_pool "$tmp/metrics")"
grep -q '^sift_pg_pool_queued 0$' "$tmp/metrics" || fail "queued: $(grep sift_pg_pool "$tmp/metrics")"
grep -q '^sift_pg_pool_connections_lost_total 0$' "$tmp/metrics" || fail "lost connections"
# the SQLite server has no pool
curl -sf "http://127.0.0.1:$port/metrics" >"$tmp/metrics_sqlite" || fail "SQLite metrics"
grep -q '^sift_pg_pool_connections 0$' "$tmp/metrics_sqlite" ||
    fail "SQLite server: pool metrics not 0: $(grep sift_pg_pool "$tmp/metrics_sqlite")"

kill -TERM "$pid" "$pg_pid"
wait "$pid" || fail "the SQLite sift serve exited with $? after SIGTERM"
wait "$pg_pid" || fail "the PostgreSQL sift serve exited with $? after SIGTERM: $(tail -3 "$tmp/pg.log")"
pid=
extra_pids=()
echo "test_serve_pgpool: ok"

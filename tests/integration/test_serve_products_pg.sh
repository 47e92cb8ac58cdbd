#!/usr/bin/env bash
# GET /v1/products/{sku} and GET /readyz on the PostgreSQL store: the same
# sample catalog loaded into SQLite and into a throwaway PostgreSQL cluster
# gives the same product JSON from both (variants, stock, prices; only the
# stock rows' updated_at differ, being load times); /readyz is 200, and 503
# not_ready once the PostgreSQL server is stopped. Exits 77 (skipped) without
# PostgreSQL server binaries.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
pg_sample # sets cluster and pgurl

SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 1 >"$tmp/sqlite.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/sqlite.log") || fail "the SQLite server did not start"
SIFT_DB="$pgurl" SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 1 >"$tmp/pg.log" 2>&1 &
pg_pid=$!
extra_pids+=($pg_pid)
pgport=$(wait_for_port "$tmp/pg.log") || fail "the PostgreSQL server did not start: $(tail -3 "$tmp/pg.log")"

# same_json A B: equal once every "updated_at" is dropped
same_json() {
    python3 - "$1" "$2" <<'PY'
import json, sys
def norm(p):
    j = json.load(open(p))
    for s in j.get("stock") or []:
        s.pop("updated_at", None)
    return j
a, b = norm(sys.argv[1]), norm(sys.argv[2])
if a != b:
    print("differ:\n ", json.dumps(a)[:400], "\n ", json.dumps(b)[:400])
    sys.exit(1)
PY
}
for sku in NIKE-PEG40-42 NIKE-VSTR3-GRY-42 ADI-BSTL5-40; do
    curl -sf "http://127.0.0.1:$port/v1/products/$sku" >"$tmp/a.json" || fail "SQLite: $sku"
    code=$(curl -s -o "$tmp/b.json" -w '%{http_code}' "http://127.0.0.1:$pgport/v1/products/$sku")
    [ "$code" = 200 ] || fail "PostgreSQL: $sku: $code $(cat "$tmp/b.json")"
    same_json "$tmp/a.json" "$tmp/b.json" || fail "$sku differs between SQLite and PostgreSQL"
    grep -q '"variants":\[{' "$tmp/b.json" || fail "$sku: no variants from PostgreSQL"
done
code=$(curl -s -o "$tmp/b.json" -w '%{http_code}' "http://127.0.0.1:$pgport/v1/products/NO-SUCH")
[ "$code" = 404 ] || fail "PostgreSQL: unknown SKU: $code"
code=$(curl -s -o "$tmp/b.json" -w '%{http_code}' "http://127.0.0.1:$pgport/readyz")
[ "$code" = 200 ] || fail "PostgreSQL readyz: $code $(cat "$tmp/b.json")"

# the database goes away: the instance is not ready any more, and says why
bash "$cluster" stop "$tmp/pg" >/dev/null 2>&1 || fail "stopping the cluster"
code=$(curl -s -o "$tmp/b.json" -w '%{http_code}' "http://127.0.0.1:$pgport/readyz")
[ "$code" = 503 ] && grep -q '"code":"not_ready"' "$tmp/b.json" ||
    fail "readyz with PostgreSQL down: $code $(cat "$tmp/b.json")"
grep -q '127.0.0.1' "$tmp/b.json" && fail "readyz tells the database's address to anyone"
grep -q 'readyz: the store cannot be read: .*PostgreSQL' "$tmp/pg.log" ||
    fail "readyz: the reason is not in the log: $(tail -3 "$tmp/pg.log")"

kill -TERM "$pid" "$pg_pid"
wait "$pid" || fail "the SQLite sift serve exited with $? after SIGTERM"
wait "$pg_pid" || fail "the PostgreSQL sift serve exited with $? after SIGTERM: $(tail -3 "$tmp/pg.log")"
pid=
extra_pids=()
echo "test_serve_products_pg: ok"

#!/usr/bin/env bash
# The command line on PostgreSQL, against a throwaway cluster: sift migrate
# (idempotent), sift ingest --db postgres://... of the sample catalog, sift ask
# answering from it with a session kept in PostgreSQL, SIFT_DB and store.url in
# sift.yaml selecting it, sift serve on it, and no password in any message.
# Exits 77 (skipped) without PostgreSQL server binaries.
set -euo pipefail
sift="$SIFT_BUILD_DIR/sift"
sample="$SIFT_SOURCE_DIR/catalog/sample"
cluster="$SIFT_SOURCE_DIR/tests/support/pg_cluster.sh"
tmp=$(mktemp -d)
chmod 755 "$tmp" # under root the cluster runs as "postgres", who must reach it
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    bash "$cluster" destroy "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$tmp" # no sift.yaml here: defaults only
unset SIFT_LLM_BASE_URL SIFT_LLM_PROVIDER SIFT_DB

set +e
url=$(bash "$cluster" start "$tmp/pg" 2>"$tmp/cluster.err")
st=$?
set -e
if [ "$st" = 77 ]; then
    echo "skipped: no PostgreSQL server binaries"
    exit 77
fi
[ "$st" = 0 ] || { cat "$tmp/cluster.err"; fail "the throwaway cluster did not start"; }

# Not migrated yet: a clear instruction, and exit status 1.
if "$sift" ingest --db "$url" "$sample/products.jsonl" 2>"$tmp/err"; then fail "ingest before migrate"; fi
grep -q "run sift migrate" "$tmp/err" || fail "no migrate hint: $(cat "$tmp/err")"

"$sift" migrate --db "$url" >"$tmp/m1" || fail "migrate"
grep -q "schema version 0 -> 1" "$tmp/m1" || fail "first migrate: $(cat "$tmp/m1")"
"$sift" migrate --db "$url" >"$tmp/m2" || fail "second migrate"
grep -q "up to date" "$tmp/m2" || fail "second migrate: $(cat "$tmp/m2")"
# migrate is for PostgreSQL only
set +e
"$sift" migrate --db "$tmp/x.db" 2>"$tmp/err"
st=$?
set -e
[ "$st" = 2 ] || fail "migrate of a SQLite path: status $st"

for kind in products inventory prices; do
    "$sift" ingest --quiet --db "$url" --kind "$kind" "$sample/$kind.jsonl" 2>"$tmp/ingest.err"
    grep -q " 0 bad" "$tmp/ingest.err" || { cat "$tmp/ingest.err"; fail "ingest $kind"; }
done
# A replay changes nothing.
"$sift" ingest --quiet --db "$url" "$sample/products.jsonl" 2>"$tmp/ingest.err"
grep -q ": 0 applied" "$tmp/ingest.err" || fail "replay applied something: $(cat "$tmp/ingest.err")"

q="Find Nike running shoes size 42 and check if they are in stock at the Hanoi, Da Nang, and HCMC warehouses"
"$sift" ask --db "$url" --session s-1 "$q" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "ask failed"; }
for w in HAN DAD SGN "size 42" VND; do
    grep -q "$w" "$tmp/out" || fail "answer lacks $w: $(cat "$tmp/out")"
done
[ "$(grep -c -- '-> check_inventory' "$tmp/err")" = 3 ] || fail "expected 3 check_inventory calls: $(cat "$tmp/err")"

# SIFT_DB selects the store; the session lives in PostgreSQL.
SIFT_DB="$url" "$sift" ask --session s-1 "what about size 43?" >"$tmp/out2" 2>/dev/null || fail "follow-up failed"
grep -q "size 43" "$tmp/out2" || fail "follow-up answer: $(cat "$tmp/out2")"
grep -q "HAN" "$tmp/out2" || fail "follow-up forgot the warehouses: $(cat "$tmp/out2")"
n=$(psql -X -q -t -A "$url" -c "SELECT count(*) FROM sessions WHERE id = 's-1'" 2>/dev/null || echo skip)
[ "$n" = 1 ] || [ "$n" = skip ] || fail "session row: $n"

# store.url in sift.yaml selects it too.
printf 'store:\n  url: "%s"\n' "$url" >"$tmp/sift.yaml"
"$sift" ask --config "$tmp/sift.yaml" "is NIKE-PEG40-42 in stock in Hanoi?" >"$tmp/out3" 2>/dev/null ||
    fail "ask with sift.yaml"
grep -q "NIKE-PEG40-42" "$tmp/out3" || fail "sift.yaml answer: $(cat "$tmp/out3")"

# sift eval searches the PostgreSQL store: a SKU query finds its product first.
printf 'query_id\tquery\nq1\tNIKE-PEG40-42\n' >"$tmp/queries.tsv"
printf 'query_id\tsku\tgain\nq1\tNIKE-PEG40-42\t2\n' >"$tmp/qrels.tsv"
"$sift" eval --db "$url" --queries "$tmp/queries.tsv" --labels "$tmp/qrels.tsv" --mode lexical \
    >"$tmp/eval" 2>&1 || fail "eval: $(cat "$tmp/eval")"
grep -Eq 'MRR@10 +1\.0+' "$tmp/eval" || fail "eval figures: $(cat "$tmp/eval")"

# sift serve on PostgreSQL answers a search.
SIFT_DB="$url" SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 1 >"$tmp/serve.log" 2>&1 &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*serving on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' "$tmp/serve.log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/serve.log"; fail "sift serve did not start"; }
grep -q "store postgresql://postgres@127.0.0.1" "$tmp/serve.log" || fail "serve log: $(cat "$tmp/serve.log")"
code=$(curl -s -o "$tmp/search" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"query":"is NIKE-PEG40-42 in stock in Hanoi?"}' "http://127.0.0.1:$port/v1/search")
[ "$code" = 200 ] || fail "search status $code: $(head -c 300 "$tmp/search")"
grep -q "NIKE-PEG40-42" "$tmp/search" || fail "search body: $(head -c 300 "$tmp/search")"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=

# A password never shows, whatever fails: refused connection, bad password.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bad="postgres://shop:hunter2-secret@127.0.0.1:$port/sift"
for cmd in "migrate --db $bad" "ingest --db $bad $sample/products.jsonl" "ask --db $bad hello"; do
    set +e
    # shellcheck disable=SC2086
    "$sift" $cmd >"$tmp/o" 2>&1
    st=$?
    set -e
    [ "$st" != 0 ] || fail "sift $cmd succeeded"
    grep -q "hunter2-secret" "$tmp/o" && fail "password shown by sift ${cmd%% *}: $(cat "$tmp/o")"
    grep -q "shop:\*\*\*@" "$tmp/o" || fail "sift ${cmd%% *} does not name the server: $(cat "$tmp/o")"
done
set +e
SIFT_DB="$bad" "$sift" serve --port 0 >"$tmp/o" 2>&1
set -e
grep -q "hunter2-secret" "$tmp/o" && fail "password shown by serve: $(cat "$tmp/o")"
grep -q "cannot reach the PostgreSQL server" "$tmp/o" || fail "serve error: $(cat "$tmp/o")"
echo "ok"

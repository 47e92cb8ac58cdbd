#!/usr/bin/env bash
# sift ingest --kafka into PostgreSQL (sift_store_open with a postgres:// URL),
# against a throwaway cluster and a mock Kafka cluster fed by kcat: 20,000
# events (upserts with versions out of order, deletes, stock, prices) and 3
# malformed ones; the malformed ones go to the DLQ; replaying the topic with
# another group changes no row; a consumer killed with SIGKILL mid-stream and
# restarted ends with the same rows as the clean run; sift serve on the
# PostgreSQL store with a kafka: block keeps its search fresh.
# Exits 77 (skipped) without PostgreSQL server binaries or kcat.
set -euo pipefail
sift="$SIFT_BUILD_DIR/sift"
cluster="$SIFT_SOURCE_DIR/tests/support/pg_cluster.sh"
command -v kcat >/dev/null || { echo "kcat not installed: skipped"; exit 77; }
[ -x "$SIFT_BUILD_DIR/mock_kafka" ] || { echo "mock_kafka not built: skipped"; exit 77; }
tmp=$(mktemp -d)
chmod 755 "$tmp" # under root the cluster runs as "postgres", who must reach it
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash "$cluster" destroy "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$tmp"
unset SIFT_DB

set +e
url=$(bash "$cluster" start "$tmp/pg" 2>"$tmp/cluster.err")
st=$?
set -e
[ "$st" = 77 ] && { echo "skipped: no PostgreSQL server binaries"; exit 77; }
[ "$st" = 0 ] || { cat "$tmp/cluster.err"; fail "the throwaway cluster did not start"; }
psql -q "$url" -c 'CREATE DATABASE sift2' || fail "createdb"
url2="${url%/sift}/sift2"
"$sift" migrate --db "$url" >/dev/null || fail "migrate"
"$sift" migrate --db "$url2" >/dev/null || fail "migrate sift2"

"$SIFT_BUILD_DIR/mock_kafka" --topic catalog:3 >"$tmp/mock.out" 2>"$tmp/mock.err" &
pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/mock.out" ] && break; sleep 0.1; done
brokers=$(head -1 "$tmp/mock.out")
[ -n "$brokers" ] || fail "the mock cluster did not start"

python3 - >"$tmp/events" <<'PY'
import json
N, SKUS = 20000, 4000
for i in range(N):
    sku = "P-%05d" % ((i * 7919) % SKUS)
    k = i % 10
    if k <= 3:
        e = {"op": "upsert", "sku": sku, "version": (i * 31) % 50 + 1,
             "product": {"title": "Runner %s model %d" % (sku, i), "brand": "Nike" if i & 1 else "Adidas",
                         "category": ["Footwear", "Running"], "attributes": {"size": str(36 + i % 10)}}}
    elif k == 4:
        e = {"op": "delete", "sku": sku, "version": (i * 17) % 50 + 1}
    elif k <= 7:
        e = {"op": "stock", "sku": sku, "warehouse": ["HAN", "DAD", "SGN"][i % 3], "quantity": i % 100,
             "version": (i * 13) % 40 + 1, "updated_at": 1767225600 + i}
    else:
        e = {"op": "price", "sku": sku, "currency": "USD" if i & 1 else "VND",
             "amount": 100 + i % 50 if i & 1 else 1000000 + i, "version": (i * 11) % 30 + 1}
    print(sku + "|" + json.dumps(e, separators=(",", ":")))
print('BAD-1|{"op":"upsert","sku":')
print('BAD-2|{"op":"stock","sku":"BAD-2","warehouse":"HAN","quantity":1}')
print('BAD-3|{"op":"teleport","sku":"BAD-3","version":1}')
PY
kcat -P -b "$brokers" -t catalog -K '|' -l "$tmp/events" || fail "kcat could not produce"

ingest() { # DB GROUP LOG [more options]
    local db=$1 group=$2 log=$3
    shift 3
    "$sift" ingest --kafka "$brokers" --topic catalog --group "$group" --assign --batch 500 \
        --db "$db" "$@" 2>"$log"
}
# every row of the catalog tables, sorted; ids and apply times left out
# (they depend on when and in which order partitions were read)
dump() {
    psql -qAt "$1" -c "SELECT sku,parent_id,title,brand,category,attrs,description,version,deleted FROM products ORDER BY sku" \
        -c "SELECT sku,title,brand,category,attrs,description,text FROM chunks ORDER BY sku" \
        -c "SELECT * FROM inventory ORDER BY sku,warehouse" \
        -c "SELECT * FROM prices ORDER BY sku,currency,valid_from" \
        -c "SELECT * FROM warehouses ORDER BY code"
}
events() { sed -n 's/.*kafka catalog: \([0-9]*\) events in .*/\1/p' "$1" | tail -1; }

ingest "$url" g-clean "$tmp/clean.log" --exit-at-end || fail "ingest: $(tail -2 "$tmp/clean.log")"
[ "$(events "$tmp/clean.log")" = 20003 ] || fail "clean run: $(tail -1 "$tmp/clean.log")"
grep -q '3 to the dead-letter topic' "$tmp/clean.log" || fail "DLQ count: $(tail -1 "$tmp/clean.log")"
grep -q "$(printf 'postgresql://postgres@127.0.0.1:[0-9]*/sift\n')" "$tmp/clean.log" ||
    fail "the summary does not name the database"
timeout 20 kcat -C -b "$brokers" -t catalog.dlq -e -f '%h\n' >"$tmp/dlq" 2>/dev/null || true
[ "$(grep -c 'sift-error=' "$tmp/dlq")" = 3 ] || fail "DLQ: $(cat "$tmp/dlq")"
grep -q 'sift-error=version: missing' "$tmp/dlq" || fail "DLQ reason: $(cat "$tmp/dlq")"
dump "$url" >"$tmp/clean.dump"
[ "$(psql -qAt "$url" -c 'SELECT count(*) FROM products')" -gt 1000 ] || fail "too few products"

# a replay by another group changes nothing
ingest "$url" g-replay "$tmp/replay.log" --exit-at-end || fail "replay: $(tail -2 "$tmp/replay.log")"
grep -q ': 0 applied' "$tmp/replay.log" || fail "the replay applied events: $(tail -1 "$tmp/replay.log")"
dump "$url" | cmp -s - "$tmp/clean.dump" || fail "the replay changed the store"

# SIGKILL mid-stream, then a restart to the end (started directly, not
# through the function, so that $! is sift itself)
"$sift" ingest --kafka "$brokers" --topic catalog --group g-kill --assign --batch 500 \
    --db "$url2" 2>"$tmp/kill1.log" &
kpid=$!
pids+=("$kpid")
for _ in $(seq 300); do
    n=$(psql -qAt "$url2" -c 'SELECT count(*) FROM inventory' 2>/dev/null || echo 0)
    [ "$n" -gt 500 ] && break
    sleep 0.02
done
kill -KILL "$kpid"
wait "$kpid" 2>/dev/null || true
kill -0 "$kpid" 2>/dev/null && fail "the consumer survived SIGKILL"
ingest "$url2" g-kill "$tmp/kill2.log" --exit-at-end || fail "restart: $(tail -2 "$tmp/kill2.log")"
rest=$(events "$tmp/kill2.log")
[ "$rest" -gt 0 ] && [ "$rest" -lt 20003 ] || fail "the restart did not resume from the committed offsets ($rest events)"
dump "$url2" | cmp -s - "$tmp/clean.dump" || fail "killed and restarted: not the same rows as the clean run"
# sift serve on the PostgreSQL store with its own group: it replays the topic
# (every event already applied by the loads above, so nothing changes), still
# refreshes its searcher, and a product produced now becomes searchable
cat >"$tmp/sift.yaml" <<YAML
store:
  url: "$url"
kafka:
  brokers: "$brokers"
  topic: catalog
  group: replica-pg
  refresh_ms: 200
YAML
SIFT_LOG_LEVEL=info "$sift" serve --config "$tmp/sift.yaml" --port 0 --workers 1 >"$tmp/serve.log" 2>&1 &
spid=$!
pids+=("$spid")
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*serving on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' "$tmp/serve.log")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || fail "sift serve on PostgreSQL did not start: $(tail -3 "$tmp/serve.log")"
for _ in $(seq 100); do grep -q 'kafka: search index refreshed' "$tmp/serve.log" && break; sleep 0.1; done
grep -q 'kafka: search index refreshed' "$tmp/serve.log" ||
    fail "no refresh after a replay of already-applied events"
printf '%s\n' 'WOMBAT-9|{"op":"upsert","sku":"WOMBAT-9","version":1,"product":{"title":"Wombat Burrow Boot","brand":"Wombat","category":["Footwear","Boots"]}}' |
    kcat -P -b "$brokers" -t catalog -K '|'
found=
for _ in $(seq 150); do
    # the whole body first: `curl | grep -q` under pipefail fails when grep
    # stops reading at its match while curl still writes (SIGPIPE)
    if out=$(curl -sf -X POST -H 'Accept: application/json' "http://127.0.0.1:$port/v1/search" \
        -d '{"query":"wombat burrow boot"}') && grep -q 'WOMBAT-9' <<<"$out"; then found=1; break; fi
    sleep 0.1
done
[ -n "$found" ] || fail "the product produced to the topic never became searchable on PostgreSQL"
kill -TERM "$spid"
wait "$spid" || fail "sift serve exited with $? after SIGTERM"
echo "test_kafka_pg: ok (killed after $n inventory rows; the restart read $rest events)"

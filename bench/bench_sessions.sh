#!/usr/bin/env bash
# What a session costs a request of sift serve, per store: POST /v1/search in
# JSON mode (offline model), one keep-alive client, sequential requests,
# without a session_id and then rotating over 50 session ids (so each run
# loads and saves a conversation of up to a few turns). One worker.
#   bench/bench_sessions.sh BUILD_DIR [REQUESTS]
# Needs python3; the PostgreSQL rows need the server binaries
# (tests/support/pg_cluster.sh), else they are skipped.
set -euo pipefail
build=${1:?usage: bench_sessions.sh BUILD_DIR [REQUESTS]}
n=${2:-300}
src=$(cd "$(dirname "$0")/.." && pwd)
sift="$build/sift"
tmp=$(mktemp -d)
chmod 755 "$tmp"
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    bash "$src/tests/support/pg_cluster.sh" destroy "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/load.py" <<'PY'
import http.client, json, sys, time
port, n, nsess, tag = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port)
qs = ["Find Nike running shoes size 42 in stock in Hanoi", "what about size 43?", "and the price?"]
lat = []
for i in range(n):
    body = {"query": qs[i % 3]}
    if nsess:
        body["session_id"] = "%s-%d" % (tag.split(",")[0], i % nsess)
    t = time.perf_counter()
    c.request("POST", "/v1/search", json.dumps(body),
              {"Accept": "application/json", "Content-Type": "application/json"})
    r = c.getresponse()
    d = r.read()
    lat.append((time.perf_counter() - t) * 1000)
    assert r.status == 200, (r.status, d[:200])
lat.sort()
print("| %s | %d | %.2f | %.2f | %.2f |" % (tag, n, sum(lat) / n, lat[n // 2], lat[int(n * 0.99)]))
PY

run() { # NAME DB [serve options...]
    local name=$1 db=$2 port=
    shift 2
    SIFT_DB="$db" SIFT_LOG_LEVEL=info "$sift" serve "$@" --port 0 --workers 1 >"$tmp/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        port=$(sed -n 's/.*serving on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' "$tmp/$name.log" 2>/dev/null)
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { cat "$tmp/$name.log"; exit 1; }
    python3 "$tmp/load.py" "$port" "$n" 0 "$name, no session_id"
    python3 "$tmp/load.py" "$port" "$n" 50 "$name, 50 sessions"
    kill "$pid"
    wait "$pid" || true
    pid=
}

for kind in products inventory prices; do
    "$sift" ingest --quiet --db "$tmp/s.db" --kind "$kind" "$src/catalog/sample/$kind.jsonl" 2>/dev/null
done
printf 'sessions:\n  store: memory\n' >"$tmp/mem.yaml"
echo "| store | requests | mean ms | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
run memory "$tmp/s.db" --config "$tmp/mem.yaml"
run sqlite "$tmp/s.db"
if url=$(bash "$src/tests/support/pg_cluster.sh" start "$tmp/pg" 2>/dev/null); then
    "$sift" migrate --db "$url" >/dev/null
    for kind in products inventory prices; do
        "$sift" ingest --quiet --db "$url" --kind "$kind" "$src/catalog/sample/$kind.jsonl" 2>/dev/null
    done
    run postgres "$url"
fi
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

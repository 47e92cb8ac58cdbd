#!/usr/bin/env bash
# GET /v1/products/{sku}: the product and its variants, its live stock per warehouse and
# its prices (read on the thread pool from the store, so a stock update loaded
# while the server runs shows at once), 404 for an unknown SKU, 400 for an
# invalid one, percent-decoding of the path segment, the API key when keys
# are set; GET /readyz, which reads the store. Also the search page's files:
# GET /, content types, ETag and 304.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
sift_sample_products="$sample/products.jsonl"
load_sample products inventory prices
# a model with two sizes (one later deleted) and a product without variants
printf '%s\n' '{"sku":"TEE-1","title":"Tee","category":["Apparel"]}' \
    '{"sku":"TEE-1-S","parent_id":"TEE-1","title":"Tee S","attributes":{"size":"S"}}' \
    '{"sku":"TEE-1-M","parent_id":"TEE-1","title":"Tee M","attributes":{"size":"M"}}' \
    '{"sku":"TEE-1-L","parent_id":"TEE-1","title":"Tee L","attributes":{"size":"L"}}' \
    '{"sku":"SOLO-1","title":"Solo"}' >"$tmp/extra.jsonl"
printf '%s\n' '{"op":"delete","sku":"TEE-1-L","version":2}' >>"$tmp/extra.jsonl"
"$sift" ingest --quiet --kind products "$tmp/extra.jsonl" 2>/dev/null

key=products-test-key-4242
SIFT_API_KEYS=$key SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 2 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
url="http://127.0.0.1:$port"
auth="Authorization: Bearer $key"

# get PATH: status to stdout, headers to $tmp/h, body to $tmp/body
get() { curl -s -D "$tmp/h" -o "$tmp/body" -w '%{http_code}' -H "$auth" "$url$1"; }
# check PY_EXPR: evaluates a Python expression over the JSON body `j`
check() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$tmp/body" "$1" || fail "$1 does not hold for $(head -c 600 "$tmp/body")"
}

code=$(get /v1/products/NIKE-PEG40-42)
[ "$code" = 200 ] || fail "product: status $code $(cat "$tmp/body")"
grep -qi '^content-type: application/json' "$tmp/h" || fail "product content type"
grep -qi '^cache-control: no-store' "$tmp/h" || fail "live data must not be cached"
check 'j["sku"] == "NIKE-PEG40-42" and j["parent_id"] == "NIKE-PEG40" and j["brand"] == "Nike"'
check 'j["title"].startswith("Nike Pegasus 40") and j["category"] == "Footwear > Running > Road"'
check 'j["attributes"]["size"] == "42" and j["attributes"]["colour"] == "black" and j["version"] == 1'
check 'j["description"].startswith("Cushioned daily trainer")'
check '{s["code"]: s["quantity"] for s in j["stock"]} == {"HAN": 3, "DAD": 4, "SGN": 11}'
check '[s["name"] for s in j["stock"]] == ["Da Nang", "Hanoi", "Ho Chi Minh City"] and j["in_stock"]'
check '{p["currency"]: p["amount"] for p in j["prices"]} == {"VND": 3250000, "USD": 130.0}'
grep -q '"amount":130.00}' "$tmp/body" || fail "USD is not in major units with 2 decimals"
# the variants: every product of model NIKE-PEG40 (sizes and colours), in catalog order
want=$(grep -o '"sku":"[^"]*","version":1,"parent_id":"NIKE-PEG40"' "$sift_sample_products" |
    cut -d'"' -f4 | paste -sd, -)
check '",".join(v["sku"] for v in j["variants"]) == "'"$want"'" and len(j["variants"]) == 40'
check 'all(v["title"].startswith("Nike Pegasus 40") and "size" in v["attributes"] for v in j["variants"])'
# a model's own page lists its children; a deleted child is not one; no family: []
[ "$(get /v1/products/TEE-1)" = 200 ] || fail "TEE-1"
check '[v["sku"] for v in j["variants"]] == ["TEE-1-S", "TEE-1-M"] and j["parent_id"] is None'
check 'j["variants"][1]["attributes"] == {"size": "M"} and j["prices"] == [] and not j["in_stock"]'
[ "$(get /v1/products/TEE-1-M)" = 200 ] || fail "TEE-1-M"
check '[v["sku"] for v in j["variants"]] == ["TEE-1-S", "TEE-1-M"]'
[ "$(get /v1/products/SOLO-1)" = 200 ] || fail "SOLO-1"
check 'j["variants"] == [] and j["brand"] == "" and j["attributes"] == {}'
[ "$(get /v1/products/TEE-1-L)" = 404 ] || fail "a deleted product is not found"

# stock is live: an update loaded while the server runs is seen at once
printf '%s\n' '{"sku":"NIKE-PEG40-42","warehouse":"HAN","quantity":0,"version":2}' \
    '{"sku":"NIKE-PEG40-42","warehouse":"DAD","quantity":0,"version":2}' \
    '{"sku":"NIKE-PEG40-42","warehouse":"SGN","quantity":0,"version":2}' >"$tmp/inv.jsonl"
"$sift" ingest --quiet --kind inventory "$tmp/inv.jsonl" 2>/dev/null
[ "$(get /v1/products/NIKE-PEG40-42)" = 200 ] || fail "product after the stock update"
check 'all(s["quantity"] == 0 for s in j["stock"]) and j["in_stock"] is False'

# the segment is percent-decoded once: %2D is '-'; %2F is part of the SKU
[ "$(get /v1/products/NIKE%2DPEG40%2d42)" = 200 ] || fail "percent-encoded SKU"
check 'j["sku"] == "NIKE-PEG40-42"'
code=$(get /v1/products/NO-SUCH%2FSKU)
[ "$code" = 404 ] || fail "unknown SKU: status $code"
check 'j["error"]["code"] == "not_found" and j["error"]["message"] == "no product with sku \"NO-SUCH/SKU\""'
[ "$(get /v1/products/a%2541)" = 404 ] || fail "a%2541"
check 'j["error"]["message"] == "no product with sku \"a%41\""'

# invalid SKUs: 400 with a JSON error naming the problem
for bad in "" "a%20b" "a%00b" "a%2" "a%22b" "a%5Cb" "%C3%A9" "$(head -c 65 /dev/zero | tr '\0' A)"; do
    code=$(get "/v1/products/$bad")
    [ "$code" = 400 ] || fail "invalid SKU '$bad': status $code $(cat "$tmp/body")"
    check 'j["error"]["code"] == "invalid_request" and j["error"]["message"].startswith("sku: ")'
done
# other methods: 405
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "$auth" "$url/v1/products/NIKE-PEG40-42")
[ "$code" = 405 ] || fail "POST on a product: $code"

# behind the API key like the rest of the API
code=$(curl -s -o "$tmp/body" -w '%{http_code}' "$url/v1/products/NIKE-PEG40-42")
[ "$code" = 401 ] || fail "product without a key: $code"

# the page: GET / is index.html; every file has its type, an ETag, no-cache
code=$(curl -s -D "$tmp/h" -o "$tmp/index" -w '%{http_code}' "$url/")
[ "$code" = 200 ] || fail "GET /: $code"
grep -qi '^content-type: text/html; charset=utf-8' "$tmp/h" || fail "GET / content type"
grep -qi '^content-security-policy: default-src .none.' "$tmp/h" || fail "GET / without CSP"
cmp -s "$tmp/index" "$SIFT_SOURCE_DIR/web/index.html" || fail "GET / is not web/index.html"
for f in index.html:text/html app.css:text/css app.js:text/javascript; do
    name=${f%%:*} type=${f#*:}
    code=$(curl -s -D "$tmp/h" -o "$tmp/file" -w '%{http_code}' "$url/$name")
    [ "$code" = 200 ] || fail "/$name: $code"
    cmp -s "$tmp/file" "$SIFT_SOURCE_DIR/web/$name" || fail "/$name differs from web/$name"
    grep -qi "^content-type: $type; charset=utf-8" "$tmp/h" || fail "/$name content type"
    grep -qi '^cache-control: no-cache' "$tmp/h" || fail "/$name cache-control"
    etag=$(sed -n 's/^etag: //ip' "$tmp/h" | tr -d '\r')
    [ -n "$etag" ] || fail "/$name has no ETag"
    rm -f "$tmp/file"
    code=$(curl -s -o "$tmp/file" -w '%{http_code}' -H "If-None-Match: $etag" "$url/$name")
    [ "$code" = 304 ] && [ ! -s "$tmp/file" ] || fail "/$name with its ETag: $code"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'If-None-Match: "other"' "$url/$name")
    [ "$code" = 200 ] || fail "/$name with another ETag: $code"
done

# sift serve --help lists every route
"$sift" serve --help >"$tmp/help"
for r in "GET /  " "POST /v1/search" "GET /v1/products/{sku}" "POST /v1/chat/completions" \
    "GET /v1/models" "GET /metrics" "GET /healthz" "GET /readyz"; do
    grep -qF "  $r" "$tmp/help" || fail "sift serve --help does not list $r"
done

# /readyz reads the store: 200 here (and open, without the key)
code=$(curl -s -D "$tmp/h" -o "$tmp/body" -w '%{http_code}' "$url/readyz")
[ "$code" = 200 ] && grep -q '"status":"ok"' "$tmp/body" || fail "readyz: $code $(cat "$tmp/body")"

kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"

# a store that breaks after the start: /healthz stays 200, /readyz says 503
cp "$SIFT_DB" "$tmp/broken.db"
SIFT_DB="$tmp/broken.db" SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 1 \
    >"$tmp/broken.log" 2>&1 &
pid=$!
bport=$(wait_for_port "$tmp/broken.log") || fail "the second server did not start"
head -c 8192 /dev/urandom >"$tmp/broken.db"
rm -f "$tmp/broken.db-wal" "$tmp/broken.db-shm"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$bport/healthz")" = 200 ] ||
    fail "healthz with a broken store"
code=$(curl -s -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$bport/readyz")
[ "$code" = 503 ] || fail "readyz with a broken store: $code $(cat "$tmp/body")"
check 'j["error"]["code"] == "not_ready" and j["error"]["message"].startswith("the store cannot be read")'
grep -q 'readyz: the store cannot be read: .*file is not a database' "$tmp/broken.log" ||
    fail "readyz: the reason is not in the log"
grep -q 'broken.db' "$tmp/body" && fail "readyz tells the store's path to anyone"
kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"
pid=
echo "test_serve_products: ok"

#!/usr/bin/env bash
# HEAD is answered like GET without the body: the page, its files and the
# GET-only API routes give GET's status, content type and length (curl -I),
# no body bytes follow the headers (read raw through bash's /dev/tcp), a
# kept-alive connection goes on after a HEAD, and a path with no GET route
# still says 405 with an Allow header (which names HEAD beside GET).
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
load_sample products
SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 1 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
url="http://127.0.0.1:$port"
sku=$(head -1 "$sample/products.jsonl" | sed 's/.*"sku":"\([^"]*\)".*/\1/')

# hdr FILE NAME: the value of header NAME in the header block FILE
hdr() { tr -d '\r' <"$1" | sed -n "s/^$2: //Ip" | head -1; }

for path in / /app.js /app.css /healthz /readyz /metrics /v1/models "/v1/products/$sku" \
    /v1/products/NO-SUCH-SKU; do
    curl -s -D "$tmp/get.h" -o "$tmp/get.b" "$url$path" || fail "GET $path"
    curl -s -I --max-time 5 "$url$path" >"$tmp/head.h" || fail "HEAD $path: curl failed"
    gs=$(head -1 "$tmp/get.h" | cut -d' ' -f2)
    hs=$(head -1 "$tmp/head.h" | cut -d' ' -f2)
    [ "$hs" = "$gs" ] || fail "HEAD $path: status $hs, GET gives $gs"
    [ "$(hdr "$tmp/head.h" content-type)" = "$(hdr "$tmp/get.h" content-type)" ] ||
        fail "HEAD $path: content type $(hdr "$tmp/head.h" content-type)"
    # /metrics changes between the two requests (request counters)
    if [ "$path" != /metrics ]; then
        [ "$(hdr "$tmp/head.h" content-length)" = "$(stat -c %s "$tmp/get.b")" ] ||
            fail "HEAD $path: content-length $(hdr "$tmp/head.h" content-length), GET body $(stat -c %s "$tmp/get.b") bytes"
    fi
    # the raw answer ends with the blank line after the headers
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'HEAD %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' "$path" >&3
    raw=$(timeout 5 cat <&3 | od -An -c | tr -d ' \n')
    exec 3<&-
    case "$raw" in
    *'\r\n\r\n') ;;
    *) fail "HEAD $path: bytes after the headers: ${raw: -60}" ;;
    esac
done

# one connection: HEAD, then GET, whose body arrives intact
curl -s -I "$url/healthz" -o /dev/null --next -s "$url/healthz" -o "$tmp/after" -v 2>"$tmp/v.log" ||
    fail "GET after HEAD on one connection: $(tail -3 "$tmp/v.log")"
grep -q 'Re-using existing connection' "$tmp/v.log" || fail "the connection was not kept after HEAD"
cmp -s "$tmp/after" <(curl -s "$url/healthz") || fail "GET after HEAD: $(cat "$tmp/after")"

# no GET route: still 405, and Allow lists HEAD beside GET where GET is allowed
code=$(curl -s -I -o /dev/null -w '%{http_code}' "$url/v1/search")
[ "$code" = 405 ] || fail "HEAD /v1/search: $code"
curl -s -D "$tmp/h" -o /dev/null -X DELETE "$url/healthz"
[ "$(hdr "$tmp/h" allow)" = "GET, HEAD" ] || fail "DELETE /healthz: Allow $(hdr "$tmp/h" allow)"
echo ok

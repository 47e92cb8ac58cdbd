#!/usr/bin/env bash
# sift ingest + sift ask end to end, offline (the rule-based planner), with a session.
set -euo pipefail
sift="$SIFT_BUILD_DIR/sift"
sample="$SIFT_SOURCE_DIR/catalog/sample"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
db="$tmp/sift.db"
cd "$tmp" # no sift.yaml here: defaults only
unset SIFT_LLM_BASE_URL SIFT_LLM_PROVIDER

for kind in products inventory prices; do
    "$sift" ingest --quiet --db "$db" --kind "$kind" "$sample/$kind.jsonl" 2>"$tmp/ingest.err"
    grep -q " 0 bad" "$tmp/ingest.err" || { cat "$tmp/ingest.err"; exit 1; }
done

fail() { echo "FAIL: $*"; exit 1; }

q="Find Nike running shoes size 42 and check if they are in stock at the Hanoi, Da Nang, and HCMC warehouses"
"$sift" ask --db "$db" --session s-1 "$q" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "ask failed"; }
for w in HAN DAD SGN "size 42" VND; do
    grep -q "$w" "$tmp/out" || fail "answer lacks $w: $(cat "$tmp/out")"
done
[ "$(grep -c -- '-> check_inventory' "$tmp/err")" = 3 ] || fail "expected 3 check_inventory calls: $(cat "$tmp/err")"

# the session carries the constraints over
"$sift" ask --db "$db" --session s-1 "what about size 43?" >"$tmp/out2" 2>"$tmp/err2" || fail "follow-up failed"
grep -q "size 43" "$tmp/out2" || fail "follow-up answer: $(cat "$tmp/out2")"
grep -q "HAN" "$tmp/out2" || fail "follow-up forgot the warehouses: $(cat "$tmp/out2")"

# --json: one event per line, in order, ending with run.finished
"$sift" ask --json --db "$db" "$q" >"$tmp/events" 2>/dev/null || fail "ask --json failed"
head -1 "$tmp/events" | grep -q '"type":"run.started"' || fail "first event: $(head -1 "$tmp/events")"
tail -1 "$tmp/events" | grep -q '"type":"run.finished"' || fail "last event: $(tail -1 "$tmp/events")"
grep -q '"type":"products"' "$tmp/events" || fail "no products event"
[ "$(grep -c '"type":"tool.finished"' "$tmp/events")" = 5 ] || fail "expected 5 tool.finished events"
n=$(wc -l <"$tmp/events")
[ "$(grep -c '^{"type":".*}$' "$tmp/events")" = "$n" ] || fail "a line is not one JSON object"

# usage errors
set +e
"$sift" ask >/dev/null 2>&1; [ $? = 2 ] || fail "no question should exit 2"
"$sift" ask --session 'bad id!' x >/dev/null 2>&1; [ $? = 2 ] || fail "bad session id should exit 2"
"$sift" ask --db "$tmp/none.db" x 2>"$tmp/e3"; [ $? = 1 ] || fail "missing store should exit 1"
grep -q "load a catalog first" "$tmp/e3" || fail "missing store message: $(cat "$tmp/e3")"
set -e
echo "test_cli_ask: ok"

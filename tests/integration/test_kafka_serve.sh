#!/usr/bin/env bash
# sift serve with a kafka: block keeps its search fresh: a product produced
# to the catalog topic (by kcat, an outside producer, into a mock cluster)
# becomes findable through POST /v1/search, a delete makes it go away again,
# stock produced to the topic is what check_inventory reports, and /metrics
# shows the consumer lag and the index refreshes. The store is first built
# from the topic by `sift ingest --kafka` with the server's group, and the
# server goes on after it. SIGTERM stops it cleanly.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
command -v kcat >/dev/null || { echo "kcat not installed: skipped"; exit 77; }
[ -x "$SIFT_BUILD_DIR/mock_kafka" ] || { echo "mock_kafka not built: skipped"; exit 77; }
load_sample products inventory prices

"$SIFT_BUILD_DIR/mock_kafka" --topic catalog:2 >"$tmp/mock.out" 2>"$tmp/mock.err" &
extra_pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/mock.out" ] && break; sleep 0.1; done
brokers=$(head -1 "$tmp/mock.out")
[ -n "$brokers" ] || fail "the mock cluster did not start"

# KAFKA_SERVE_EMBED=1 (test_kafka_serve_embed.sh): the same with a remote
# embedding provider (bench/mock_embed), so every index refresh re-embeds the
# catalog through HTTP and queries are embedded by the refreshed searcher's
# provider
embed_yaml=
if [ "${KAFKA_SERVE_EMBED:-0}" = 1 ]; then
    [ -x "$SIFT_BUILD_DIR/mock_embed" ] || { echo "mock_embed not built: skipped"; exit 77; }
    unset OPENAI_API_KEY SIFT_EMBED_PROVIDER SIFT_EMBED_MODEL
    "$SIFT_BUILD_DIR/mock_embed" --dims 64 >"$tmp/embed.out" 2>"$tmp/embed.err" &
    extra_pids+=($!)
    for _ in $(seq 100); do [ -s "$tmp/embed.out" ] && break; sleep 0.1; done
    export SIFT_EMBED_BASE_URL="$(head -1 "$tmp/embed.out")" SIFT_EMBED_API_KEY="sk-kafka-test"
    [ -n "$SIFT_EMBED_BASE_URL" ] || fail "mock_embed did not start"
    embed_yaml=$'embed:\n  dimensions: 64\n  batch_size: 500\n'
fi

# a replica's store built from the topic first, then served (docs/deploy.md):
# the server goes on from the offsets the load committed
printf '%s\n' 'OKAPI-7|{"op":"upsert","sku":"OKAPI-7","version":1,"product":{"title":"Okapi Stripe Sandal","brand":"Okapi","category":["Footwear","Sandals"]}}' |
  kcat -P -b "$brokers" -t catalog -K '|' || fail "kcat could not produce to the mock cluster"
"$sift" ingest --kafka "$brokers" --topic catalog --group replica-a --assign --exit-at-end \
    2>"$tmp/ingest.log" || fail "sift ingest --kafka: $(tail -2 "$tmp/ingest.log")"
grep -q 'kafka catalog: 1 events' "$tmp/ingest.log" || fail "ingest summary: $(tail -1 "$tmp/ingest.log")"

# a kafka: block missing its topic is refused with the reason
printf '%s\nkafka:\n  brokers: "%s"\n' "$embed_yaml" "$brokers" >"$tmp/bad.yaml"
if "$sift" serve --config "$tmp/bad.yaml" --port 0 >"$tmp/bad.log" 2>&1; then
    fail "a kafka: block without a topic was accepted"
fi
grep -q 'kafka: needs both brokers and topic (topic is missing)' "$tmp/bad.log" ||
    fail "bad kafka: block: $(tail -1 "$tmp/bad.log")"
printf '%s\nkafka:\n  brokers: "%s"\n  topic: t\n  batch: 0\n' "$embed_yaml" "$brokers" >"$tmp/bad.yaml"
if "$sift" serve --config "$tmp/bad.yaml" --port 0 >"$tmp/bad.log" 2>&1; then
    fail "kafka.batch: 0 was accepted"
fi
grep -q 'kafka.batch: must be an integer between 1 and 100000' "$tmp/bad.log" ||
    fail "bad kafka.batch: $(tail -1 "$tmp/bad.log")"

cat >"$tmp/sift.yaml" <<YAML
$embed_yaml
kafka:
  brokers: "$brokers"
  topic: catalog
  group: replica-a
  refresh_ms: 200
YAML
SIFT_LOG_LEVEL=info "$sift" serve --config "$tmp/sift.yaml" --port 0 --workers 2 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
url="http://127.0.0.1:$port"

search() {
    curl -sf -X POST -H 'Accept: application/json' "$url/v1/search" -d "{\"query\":\"$1\"}"
}
# wait_for CMD...: retries CMD for up to 15 s
wait_for() {
    for _ in $(seq 150); do "$@" && return 0; sleep 0.1; done
    return 1
}
# The whole body is read before grep: `search | grep -q` under pipefail fails
# when grep stops at its match while curl still writes (SIGPIPE), which would
# make found false (and gone true) by accident.
found() {
    local out
    out=$(search "quokka zebra trail shoe") && grep -q 'QUOKKA-ZEBRA-42' <<<"$out"
}

out=$(search "okapi stripe sandal") && grep -q 'OKAPI-7' <<<"$out" ||
    fail "the product loaded before serving is not found"
found && fail "the product is found before it was produced"
printf '%s\n' \
  'QUOKKA-ZEBRA-42|{"op":"upsert","sku":"QUOKKA-ZEBRA-42","version":1,"product":{"title":"Quokka Zebra Trail Shoe","brand":"Quokka","category":["Footwear","Trail"],"attributes":{"size":"42"}}}' \
  'QUOKKA-ZEBRA-42|{"op":"stock","sku":"QUOKKA-ZEBRA-42","warehouse":"DAD","quantity":7,"version":1}' \
  'QUOKKA-ZEBRA-42|{"op":"price","sku":"QUOKKA-ZEBRA-42","currency":"VND","amount":1990000,"version":1}' \
  'bad|{"op":"upsert"' |
  kcat -P -b "$brokers" -t catalog -K '|' || fail "kcat could not produce to the mock cluster"
wait_for found || fail "the product produced to the topic never became searchable"
search "quokka zebra trail shoe in stock in Da Nang?" >"$tmp/answer"
grep -q 'QUOKKA-ZEBRA-42' "$tmp/answer" || fail "no product in the answer"
grep -q '"quantity":7' "$tmp/answer" || grep -q 'Da Nang' "$tmp/answer" ||
    fail "stock from the topic not used: $(head -c 400 "$tmp/answer")"

curl -sf "$url/metrics" >"$tmp/metrics" || fail "metrics"
grep -Eq '^sift_kafka_consumer_lag\{partition="[01]"\} 0$' "$tmp/metrics" || fail "no lag metric: $(grep kafka "$tmp/metrics")"
grep -Eq '^sift_kafka_index_refreshes_total [1-9]' "$tmp/metrics" || fail "no index refresh counted"
grep -Eq '^sift_kafka_dlq_total 1$' "$tmp/metrics" || fail "the malformed event was not counted"
grep -q 'sent to catalog.dlq' "$tmp/serve.log" || fail "no DLQ log line"
grep -q 'kafka: search index refreshed' "$tmp/serve.log" || fail "no index refresh logged"
if [ -n "$embed_yaml" ]; then
    # the refresh embedded the catalog again through the remote provider
    grep -q 'kafka: search index refreshed (.*vectors openai:' "$tmp/serve.log" ||
        fail "the refresh did not use the remote embedder: $(grep 'index refreshed' "$tmp/serve.log" | tail -1)"
fi

printf 'QUOKKA-ZEBRA-42|{"op":"delete","sku":"QUOKKA-ZEBRA-42","version":2}\n' |
  kcat -P -b "$brokers" -t catalog -K '|'
gone() { ! found; }
wait_for gone || fail "the deleted product is still found"

# the server read only what came after the load: 4 events, then the delete
curl -sf "$url/metrics" >"$tmp/metrics" && grep -Eq '^sift_kafka_events_total 5$' "$tmp/metrics" ||
    fail "events after the load: $(curl -sf "$url/metrics" | grep '^sift_kafka_events_total')"

kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"
pid=
grep -q 'sift stopped' "$tmp/serve.log" || fail "no clean stop in the log"
echo "test_kafka_serve: ok"

#!/usr/bin/env bash
# sift ingest --kafka takes brokers, topic, group and dlq from the kafka:
# block of the config (./sift.yaml by default, --config FILE) when the
# options are absent; options win over the file, SIFT_KAFKA_* over both
# file and default; a block without brokers, or with a bad value, is refused
# with the reason. Events are produced by kcat into bench/mock_kafka.
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
command -v kcat >/dev/null || { echo "kcat not installed: skipped"; exit 77; }
[ -x "$SIFT_BUILD_DIR/mock_kafka" ] || { echo "mock_kafka not built: skipped"; exit 77; }
unset SIFT_KAFKA_BROKERS SIFT_KAFKA_TOPIC SIFT_KAFKA_GROUP

"$SIFT_BUILD_DIR/mock_kafka" --topic catalog:1 --topic other:1 --topic bad.dlq:1 \
    >"$tmp/mock.out" 2>"$tmp/mock.err" &
extra_pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/mock.out" ] && break; sleep 0.1; done
brokers=$(head -1 "$tmp/mock.out")
[ -n "$brokers" ] || fail "the mock cluster did not start"

printf '%s\n' \
    'A-1|{"op":"upsert","sku":"A-1","version":1,"product":{"title":"Red cap"}}' \
    'A-2|{"op":"upsert","sku":"A-2","version":1}' |
    kcat -P -b "$brokers" -t catalog -K '|' || fail "kcat could not produce to the mock cluster"
printf '%s\n' 'B-1|{"op":"upsert","sku":"B-1","version":1,"product":{"title":"Blue hat"}}' |
    kcat -P -b "$brokers" -t other -K '|' || fail "kcat could not produce to the mock cluster"

# ingest ARGS...: runs sift ingest --kafka ARGS into $tmp/ingest.log
ingest() {
    "$sift" ingest --kafka "$@" --assign --exit-at-end --quiet 2>"$tmp/ingest.log"
}

# everything from ./sift.yaml: a bare --kafka
cat >sift.yaml <<YAML
kafka:
  brokers: "$brokers"
  topic: catalog
  group: from-yaml
  dlq: bad.dlq
YAML
ingest || fail "sift ingest --kafka with ./sift.yaml: $(tail -2 "$tmp/ingest.log")"
grep -q 'kafka catalog: 2 events.* 1 applied.* 1 to the dead-letter topic' "$tmp/ingest.log" ||
    fail "summary: $(tail -1 "$tmp/ingest.log")"
kcat -C -b "$brokers" -t bad.dlq -e -q -f '%k\n' >"$tmp/dlq" 2>/dev/null ||
    fail "kcat could not read the dead-letter topic"
[ "$(cat "$tmp/dlq")" = A-2 ] || fail "dead-letter topic bad.dlq holds: $(cat "$tmp/dlq")"

# the group came from the file: its offsets are committed, nothing is left;
# another group (an option) reads everything again
ingest || fail "second run: $(tail -2 "$tmp/ingest.log")"
grep -q 'kafka catalog: 0 events' "$tmp/ingest.log" || fail "group from-yaml: $(tail -1 "$tmp/ingest.log")"
ingest --group other-group || fail "--group: $(tail -2 "$tmp/ingest.log")"
grep -q 'kafka catalog: 2 events' "$tmp/ingest.log" || fail "--group: $(tail -1 "$tmp/ingest.log")"

# options win over the file, and so does the environment
ingest --topic other --group g3 || fail "--topic: $(tail -2 "$tmp/ingest.log")"
grep -q 'kafka other: 1 events' "$tmp/ingest.log" || fail "--topic: $(tail -1 "$tmp/ingest.log")"
SIFT_KAFKA_TOPIC=other ingest --group g4 || fail "SIFT_KAFKA_TOPIC: $(tail -2 "$tmp/ingest.log")"
grep -q 'kafka other: 1 events' "$tmp/ingest.log" ||
    fail "SIFT_KAFKA_TOPIC: $(tail -1 "$tmp/ingest.log")"

# --config FILE instead of ./sift.yaml, with brokers given as the option
mkdir "$tmp/etc"
printf 'kafka:\n  topic: other\n  group: g5\n' >"$tmp/etc/k.yaml"
ingest "$brokers" --config "$tmp/etc/k.yaml" || fail "--config: $(tail -2 "$tmp/ingest.log")"
grep -q 'kafka other: 1 events' "$tmp/ingest.log" || fail "--config: $(tail -1 "$tmp/ingest.log")"

# refused with the reason
printf 'kafka:\n  topic: catalog\n' >"$tmp/etc/nobrokers.yaml"
if ingest --config "$tmp/etc/nobrokers.yaml"; then fail "no brokers anywhere was accepted"; fi
grep -q 'needs brokers' "$tmp/ingest.log" || fail "no brokers: $(tail -1 "$tmp/ingest.log")"
printf 'kafka:\n  brokers: "%s"\n  topic: 5\n' "$brokers" >"$tmp/etc/badtopic.yaml"
if ingest --config "$tmp/etc/badtopic.yaml"; then fail "kafka.topic: 5 was accepted"; fi
grep -q 'kafka.topic: must be a non-empty string' "$tmp/ingest.log" ||
    fail "kafka.topic: 5: $(tail -1 "$tmp/ingest.log")"
rm sift.yaml
if ingest; then fail "a bare --kafka without a config was accepted"; fi
grep -q 'no config file read' "$tmp/ingest.log" || fail "no config: $(tail -1 "$tmp/ingest.log")"
echo "ok"

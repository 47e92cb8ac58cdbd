#!/usr/bin/env bash
# test_kafka_serve.sh with a remote embedding provider (bench/mock_embed):
# the Kafka index refresh rebuilds with the server's own embedder, and a
# search's query vector always comes from the searcher it searches.
KAFKA_SERVE_EMBED=1 exec bash "$SIFT_SOURCE_DIR/tests/integration/test_kafka_serve.sh"

#!/usr/bin/env bash
# make run: load the sample catalog into the embedded store, then serve.
# Usage: scripts/run.sh SIFT_BINARY PORT DB_PATH
set -euo pipefail
sift=$1 port=$2 db=$3
here=$(cd "$(dirname "$0")/.." && pwd)
sample="$here/catalog/sample"

mkdir -p "$(dirname "$db")"
# Loading is idempotent (versioned upserts), so a second `make run` changes nothing.
"$sift" ingest --quiet --db "$db" --kind products "$sample/products.jsonl"
"$sift" ingest --quiet --db "$db" --kind inventory "$sample/inventory.jsonl"
"$sift" ingest --quiet --db "$db" --kind prices "$sample/prices.jsonl"

if [ -n "${SIFT_LLM_BASE_URL:-}" ]; then
    model="the model at $SIFT_LLM_BASE_URL (SIFT_LLM_BASE_URL${SIFT_LLM_MODEL:+, model $SIFT_LLM_MODEL})"
else
    model="the offline rule-based planner (set SIFT_LLM_BASE_URL to use a language model)"
fi
cat <<MSG
sift: serving on http://127.0.0.1:$port/ (Ctrl-C stops it)
  the search page:  open http://127.0.0.1:$port/ in a browser
  the API:          curl -N -X POST http://127.0.0.1:$port/v1/search \\
                         -d '{"query":"Nike running shoes size 42 in stock in Hanoi, Da Nang or HCMC?"}'
  answering with:   $model
MSG
export SIFT_DB="$db"
exec "$sift" serve --port "$port"

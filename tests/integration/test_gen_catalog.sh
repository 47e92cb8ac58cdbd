#!/usr/bin/env bash
# The committed sample catalog is exactly what scripts/gen-catalog.py
# generates: run it twice into temporary directories and compare both runs
# with catalog/sample byte for byte (deterministic, and not edited by hand).
set -euo pipefail
src=${SIFT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$src/scripts/gen-catalog.py" --out "$tmp/a" >/dev/null
python3 "$src/scripts/gen-catalog.py" --out "$tmp/b" >/dev/null
for f in products.jsonl inventory.jsonl prices.jsonl; do
    cmp "$tmp/a/$f" "$tmp/b/$f" || { echo "gen-catalog: $f differs between two runs"; exit 1; }
    cmp "$tmp/a/$f" "$src/catalog/sample/$f" ||
        { echo "gen-catalog: catalog/sample/$f is not what scripts/gen-catalog.py generates"; exit 1; }
done
n=$(wc -l <"$tmp/a/products.jsonl")
[ "$n" -ge 2000 ] || { echo "gen-catalog: only $n products"; exit 1; }
grep -q '"sku":"NIKE-PEG40-42"' "$tmp/a/products.jsonl" || { echo "gen-catalog: no NIKE-PEG40-42"; exit 1; }
echo "gen-catalog: $n products, deterministic, matches catalog/sample"

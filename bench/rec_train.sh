#!/usr/bin/env bash
# Wall time and figures of the default tff_rec runs on the bundled MovieLens:
# fedrecon (default flags), fedavg (same flags), centralized, then the report.
#   bench/rec_train.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/rec_bench}"
PY=.venv/bin/python
for algorithm in fedrecon fedavg centralized; do
  start=$(date +%s)
  "$PY" -m tff_rec.train --output_dir="$OUT" --algorithm="$algorithm"
  echo "bench: $algorithm wall time $(( $(date +%s) - start )) s (nproc $(nproc))"
done
start=$(date +%s)
"$PY" -m tff_rec.evaluate --output_dir="$OUT"
echo "bench: evaluate wall time $(( $(date +%s) - start )) s"
cat "$OUT/summary.json"

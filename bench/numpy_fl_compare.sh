#!/usr/bin/env bash
# NumPy vs TFF on the bundled credit data, 5 banks: the equivalence and speed figures of issue 4.
#   bench/numpy_fl_compare.sh [OUT]     (default OUT=/tmp/numpy_fl_bench)
# The example-weighted runs use size-skewed banks, where weighting matters; the last run checks the
# credit job's own Keras scorecard model (tff_credit.model) instead of numpy_fl's Dense(1) on logits.
# Each run prints max |dw| per round, per-round wall times and the TFF/NumPy ratio, and exits 3
# if max |dw| ever exceeds 1e-5. Wall times depend on the machine and its load: figures, not tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-/tmp/numpy_fl_bench}"
PY="$ROOT/.venv/bin/python"
cd "$ROOT"

run() {
  local name="$1"; shift
  echo "== $name: $*"
  "$PY" -m numpy_fl.crosscheck --data=credit --banks=5 --output_dir="$OUT/$name" "$@" \
    | grep -v '^round ' || return 1
}

run fedsgd_uniform   --algorithm=fedsgd --weighting=uniform      --rounds=50 --lr=0.5 \
    --async_buffer=2 --delay_distribution=lognormal --delay_spread=1.0 --target_fraction=0.99
run fedsgd_weighted  --algorithm=fedsgd --weighting=num_examples --rounds=50 --lr=0.5 --partition=size_skew
run fedavg_fullbatch --algorithm=fedavg --weighting=num_examples --rounds=20 --lr=0.5 --local_epochs=3 --partition=size_skew
run fedavg_minibatch --algorithm=fedavg --weighting=uniform      --rounds=20 --lr=0.1 --batch_size=32 \
    --async_buffer=2 --delay_distribution=pareto --delay_spread=0.8 --target_fraction=0.99
run fedavg_credit_model --algorithm=fedavg --weighting=num_examples --rounds=20 --lr=0.5 --local_epochs=2 \
    --batch_size=64 --partition=size_skew --tff_model=credit
echo "outputs (compare.csv/png, async.csv/png, summary.json) under $OUT"

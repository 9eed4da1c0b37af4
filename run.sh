#!/usr/bin/env bash
# One entry point: builds .venv from the lock when needed, then runs the main job or the tests.
#   ./run.sh             the main job on bundled real data: credit scoring, then recommendation
#   ./run.sh test [ARGS] pytest over tests/ on 2 workers (ARGS go to pytest, e.g. -q or tests/tff_credit)
#   ./run.sh credit      only the credit-scoring demo (train + evaluate), outputs in runs/credit
#   ./run.sh rec         only the recommendation demo (train + evaluate + one user's top 10), runs/rec
#   ./run.sh crosscheck  the NumPy baseline against TFF on the credit data (FedSGD, FedAvg, async), runs/crosscheck
#   ./run.sh setup       install only
#   ./run.sh help        this list
# Outputs go under runs/ (or $OUT).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
LOCK="$ROOT/requirements-lock.txt"
STAMP="$VENV/.lock-stamp"
OUT="${OUT:-$ROOT/runs}"

die() { echo "run.sh: $*" >&2; exit 1; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

wanted_stamp() {
  # The venv is rebuilt whenever the lock or the package metadata changes.
  cat "$LOCK" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1
}

setup() {
  local want; want="$(wanted_stamp)"
  if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    return 0
  fi
  local py
  py="$(find_python)" || die "Python 3.11 is required (TensorFlow Federated 0.87 supports < 3.12) but no python3.11 is on PATH. Install it, or set PYTHON=/path/to/python3.11."
  echo "run.sh: building $VENV from $(basename "$LOCK") (one-time, about 2 minutes)..." >&2
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  # --no-deps: the lock is complete, and TFF's own jax==0.4.14 pin cannot be met (BUILD_NOTES.md).
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$LOCK"
  # The project's own packages are used in place (what an editable install does, without a build step).
  "$VENV/bin/python" - "$ROOT" <<'PY'
import pathlib, site, sys
pathlib.Path(site.getsitepackages()[0], "tff_federated_jobs.pth").write_text(sys.argv[1] + "\n")
PY
  echo "$want" > "$STAMP"
  echo "run.sh: environment ready." >&2
}

PY="$VENV/bin/python"
credit() { "$PY" -m tff_credit.demo --output_dir="$OUT/credit"; }
rec() { "$PY" -m tff_rec.demo --output_dir="$OUT/rec"; }
crosscheck() {
  "$PY" -m numpy_fl.crosscheck --data=credit --algorithm=fedsgd --rounds=50 --lr=0.5 \
    --output_dir="$OUT/crosscheck/fedsgd" --async_buffer=2 --delay_distribution=lognormal --target_fraction=0.99
  "$PY" -m numpy_fl.crosscheck --data=credit --algorithm=fedavg --rounds=20 --lr=0.1 --batch_size=32 \
    --output_dir="$OUT/crosscheck/fedavg"
}

cmd="${1:-main}"
case "$cmd" in
  main) setup; credit; rec ;;
  credit|rec|crosscheck) setup; "$cmd" ;;
  # Two pytest workers (pytest-xdist): most of the suite is TF start-ups and
  # subprocesses, which overlap well on 2 cores. TEST_WORKERS=0 runs in one process.
  test) shift; setup; cd "$ROOT"; exec "$VENV/bin/python" -m pytest -n "${TEST_WORKERS:-2}" "$@" ;;
  setup) setup ;;
  help|-h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "run.sh: unknown command '$cmd'" >&2; sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

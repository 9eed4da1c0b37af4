#!/usr/bin/env bash
# Two local TFF workers (--local_workers=2): kill -9 one of them while
# tff_rec.train runs. The run stops with one line naming the worker and its
# log (exit 2, nothing of the round written); rerunning the same command
# resumes from the last checkpoint and ends with the parameters of an
# uninterrupted one-worker run; no worker process is left.
#   bench/multi_worker_kill.sh [ROUNDS] [KILL_AFTER_ROUND]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-6}"
KILL_AT="${2:-3}"
PY=.venv/bin/python
DIR=$(mktemp -d /tmp/multi_worker_kill.XXXX)
ARGS=(--rounds="$ROUNDS" --rounds_per_checkpoint=1)

"$PY" -m tff_rec.train --output_dir="$DIR/one" "${ARGS[@]}" > "$DIR/one.log"

"$PY" -m tff_rec.train --output_dir="$DIR/two" "${ARGS[@]}" --local_workers=2 \
  > "$DIR/two.log" 2> "$DIR/two.err" &
pid=$!
until grep -q "round *$KILL_AT/$ROUNDS" "$DIR/two.log" 2>/dev/null; do sleep 0.2; done
# The workers are the train process's worker_binary children; the second started last.
workers=$(ps -o pid=,args= --ppid "$pid" | awk '/worker_binary/ {print $1}' | sort -n)
victim=$(echo "$workers" | tail -1)
kill -9 "$victim"
code=0; wait "$pid" || code=$?
echo "bench: killed worker pid $victim after: $(grep -o "round *[0-9]*/$ROUNDS" "$DIR/two.log" | tail -1); exit code $code"
echo "bench: stderr: $(cat "$DIR/two.err")"
[ "$code" -eq 2 ] && [ "$(grep -c . "$DIR/two.err")" -eq 1 ] && grep -q "pid $victim" "$DIR/two.err"
for w in $workers; do
  if kill -0 "$w" 2>/dev/null; then echo "bench: worker $w is still running"; exit 1; fi
done

"$PY" -m tff_rec.train --output_dir="$DIR/two" "${ARGS[@]}" --local_workers=2 \
  | tee "$DIR/resumed.log" | grep -E 'resuming|test RMSE'

"$PY" - "$DIR" <<'PY'
import sys
import numpy as np
from tff_common import run_dir
from tff_rec import params
a, b = (params.from_arrays(run_dir.RunDir(f'{sys.argv[1]}/{name}/fedrecon').load_model()[0])
        for name in ('one', 'two'))
names = ['item_factors', 'item_bias', 'implicit_item_factors', 'implicit_item_bias']
diff = max([abs(a.offset - b.offset)] + [float(np.max(np.abs(getattr(a, n) - getattr(b, n))))
                                         for n in names if getattr(a, n) is not None])
print(f'bench: max |one worker - two workers, killed and resumed| over all parameters: {diff:.3g}')
sys.exit(0 if diff <= 1e-6 else 1)
PY

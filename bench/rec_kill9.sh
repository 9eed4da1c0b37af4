#!/usr/bin/env bash
# kill -9 during tff_rec.train, rerun the same command: it resumes, and the
# final parameters equal those of an uninterrupted run.
#   bench/rec_kill9.sh [ROUNDS] [KILL_AFTER_ROUND]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-12}"
KILL_AT="${2:-5}"
PY=.venv/bin/python
DIR=$(mktemp -d /tmp/rec_kill9.XXXX)
ARGS=(--rounds="$ROUNDS" --rounds_per_checkpoint=2)

"$PY" -m tff_rec.train --output_dir="$DIR/uninterrupted" "${ARGS[@]}" > "$DIR/uninterrupted.log"

"$PY" -m tff_rec.train --output_dir="$DIR/killed" "${ARGS[@]}" > "$DIR/killed.log" &
pid=$!
until grep -q "round *$KILL_AT/$ROUNDS" "$DIR/killed.log" 2>/dev/null; do sleep 0.5; done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
echo "bench: killed -9 after: $(grep -o "round *[0-9]*/$ROUNDS" "$DIR/killed.log" | tail -1)"
"$PY" -m tff_rec.train --output_dir="$DIR/killed" "${ARGS[@]}" | tee "$DIR/resumed.log" | grep -E 'resuming|test RMSE'

"$PY" - "$DIR" <<'PY'
import sys
import numpy as np
from tff_common import run_dir
from tff_rec import params
a, b = (params.from_arrays(run_dir.RunDir(f'{sys.argv[1]}/{name}/fedrecon').load_model()[0])
        for name in ('uninterrupted', 'killed'))
names = ['item_factors', 'item_bias', 'implicit_item_factors', 'implicit_item_bias']
diff = max([abs(a.offset - b.offset)] + [float(np.max(np.abs(getattr(a, n) - getattr(b, n))))
                                         for n in names if getattr(a, n) is not None])
print(f'bench: max |uninterrupted - resumed| over all parameters: {diff:.3g}')
sys.exit(0 if diff <= 1e-5 else 1)
PY

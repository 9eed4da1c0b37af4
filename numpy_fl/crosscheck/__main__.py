r"""NumPy vs TFF, side by side: same clients, start and learning rates, same result.

Runs both engines in lockstep on the Python orchestrator (TFF's rounds in its
C++ runtime) and prints, per round, each engine's training loss, the largest
parameter difference and each engine's wall time; at the end the TFF/NumPy
time ratio. With --async_buffer=B it also races synchronous rounds against
FedBuff-style asynchronous aggregation under simulated heavy-tailed delays.

  python -m numpy_fl.crosscheck --data=credit --algorithm=fedsgd --rounds=50 \
      --output_dir=/tmp/compare_fedsgd
  python -m numpy_fl.crosscheck --data=credit --algorithm=fedavg --rounds=20 \
      --batch_size=32 --async_buffer=2 --output_dir=/tmp/compare_fedavg

Exits 3 if the parameter difference ever exceeds --tolerance, 2 (one line) on
bad input.
"""

from tff_common import cli

# isort: split

import sys

from absl import flags

from numpy_fl.crosscheck import flags as crosscheck_flags
from numpy_fl.crosscheck import lockstep
from tff_common import progress
from tff_common.errors import InputError

crosscheck_flags.define_data_flags()
crosscheck_flags.define_run_flags()
crosscheck_flags.define_race_flags()
crosscheck_flags.define_output_dir()
flags.adopt_module_key_flags(crosscheck_flags)  # so that --help lists them
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise InputError(f'unexpected arguments: {" ".join(argv[1:])}')
  config, data = crosscheck_flags.configs()
  summary = lockstep.run(config, data, output_dir=FLAGS.output_dir,
                         log=progress.print_flushed)
  if not summary['within_tolerance']:
    sys.exit(lockstep.EXIT_DISAGREE)


if __name__ == '__main__':
  cli.run(main)

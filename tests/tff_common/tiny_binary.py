"""A tiny binary for the tests of tff_common.cli: `cli.run` around a linear
model trained by `program.run_training`, the way the jobs' binaries do it.

    python -m tests.tff_common.tiny_binary --output_dir=DIR [--rounds=N]
        [--pause_at_round=K] [--pause_while_loading] [--overflow_at_round=K]

It writes the TFF worker's pid to DIR.worker_pid (for the tests that check it
is gone) and prints 'pausing' on stderr before a pause, so a test can signal
it at a known place.
"""

import sys
import time

from absl import flags

from tests.tff_common import helpers
from tff_common import cli  # before TF: imports it quietly
from tff_common import program
from tff_common import program_config
from tff_common import run_dir
from tff_common import runtime

flags.DEFINE_string('output_dir', None, 'Run directory.', required=True)
flags.DEFINE_integer('rounds', 3, 'Rounds.')
flags.DEFINE_integer('rounds_per_checkpoint', 1, 'Checkpoint period.')
flags.DEFINE_integer('pause_at_round', 0, 'Sleep while building the data of this round.')
flags.DEFINE_bool('pause_while_loading', False, 'Sleep before training ("loading data").')
flags.DEFINE_integer('overflow_at_round', 0, 'Feed this round a value that overflows.')
FLAGS = flags.FLAGS


def _pause():
  print('pausing', file=sys.stderr, flush=True)
  time.sleep(120)


def client_data(ids, round_num):
  if round_num == FLAGS.pause_at_round:
    _pause()
  return helpers.linear_datasets(ids, round_num, examples=8,
                                 overflow=round_num == FLAGS.overflow_at_round)


def main(argv):
  del argv
  with open(FLAGS.output_dir + '.worker_pid', 'w') as f:
    f.write(str(runtime.install_execution_context().pid))
  run = run_dir.RunDir(FLAGS.output_dir)
  if FLAGS.pause_while_loading:
    _pause()
  config = program_config.ProgramConfig(rounds=FLAGS.rounds,
                                        rounds_per_checkpoint=FLAGS.rounds_per_checkpoint)
  with run.lock():
    run.claim({'rounds': FLAGS.rounds}, may_change=('rounds',))
    process = helpers.linear_process()
    result = program.run_training(process=process, client_ids=['c0', 'c1'],
                                  client_data_fn=client_data, run=run, config=config)
    weights = process.get_model_weights(result.state).trainable
    run.save_model({f'w{i}': w for i, w in enumerate(weights)}, rounds=FLAGS.rounds)
  print('saved', flush=True)


if __name__ == '__main__':
  cli.run(main)

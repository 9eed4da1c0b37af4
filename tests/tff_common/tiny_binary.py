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

import numpy as np
from absl import flags

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


def _process():
  import tensorflow as tf
  import tensorflow_federated as tff

  def model_fn():
    keras_model = tf.keras.Sequential([tf.keras.layers.Dense(
        1, input_shape=(2,), kernel_initializer='zeros')])
    return tff.learning.models.from_keras_model(
        keras_model, loss=tf.keras.losses.MeanSquaredError(),
        input_spec=(tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32)))

  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1))


def client_data(ids, round_num):
  import tensorflow as tf
  if round_num == FLAGS.pause_at_round:
    _pause()
  datasets = []
  for cid in ids:
    rng = np.random.default_rng([int(cid[1:]), round_num])
    x = rng.normal(size=(8, 2)).astype(np.float32)
    if round_num == FLAGS.overflow_at_round:
      x[0, 0] = 3e38  # finite in float32; its square is not
    y = (x @ np.array([[1.0], [-2.0]], np.float32) + 0.5).astype(np.float32)
    datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
  return datasets


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
    process = _process()
    result = program.run_training(process=process, client_ids=['c0', 'c1'],
                                  client_data_fn=client_data, run=run, config=config)
    weights = process.get_model_weights(result.state).trainable
    run.save_model({f'w{i}': w for i, w in enumerate(weights)}, rounds=FLAGS.rounds)
  print('saved', flush=True)


if __name__ == '__main__':
  cli.run(main)

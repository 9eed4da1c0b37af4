r"""NumPy vs TFF, side by side: same clients, start and learning rates, same result.

Runs both engines in lockstep on the Python orchestrator (TFF's rounds in its
C++ runtime) and prints, per round, each engine's training loss, the largest
parameter difference and each engine's wall time; at the end the TFF/NumPy
time ratio. With --async_buffer=B it also compares synchronous rounds against
FedBuff-style asynchronous aggregation under simulated heavy-tailed delays.

  python -m numpy_fl.compare --data=credit --algorithm=fedsgd --rounds=50 \
      --output_dir=/tmp/compare_fedsgd
  python -m numpy_fl.compare --data=credit --algorithm=fedavg --rounds=20 \
      --batch_size=32 --async_buffer=2 --output_dir=/tmp/compare_fedavg

Exits 1 if the parameter difference ever exceeds --tolerance.
"""

import sys

from absl import flags

from tff_common import cli
from tff_common.errors import InputError
from tff_credit import banks
from numpy_fl import asynchronous
from numpy_fl import server
from numpy_fl import tff_reference

# Data
_DATA = flags.DEFINE_enum('data', 'credit', ['credit', 'synthetic'],
                          'credit: the bundled credit data split into banks; '
                          "synthetic: the seed's linear regression problem.")
_BANKS = flags.DEFINE_integer('banks', 5, 'Number of clients (banks).')
_PARTITION = flags.DEFINE_enum('partition', 'iid', banks.PARTITIONS,
                               "How the credit data is split into banks (tff_credit's partitions).")
_FEATURES = flags.DEFINE_integer('synthetic_features', 10, 'Features of the synthetic problem.')
_MODEL = flags.DEFINE_enum('model', None, ['linear', 'logistic'],
                           'Default: logistic for credit, linear for synthetic.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seeds data split, initial weights and delays.')

# Algorithm
_ALGORITHM = flags.DEFINE_enum('algorithm', 'fedsgd', ['fedsgd', 'fedavg'], 'What both engines run.')
_WEIGHTING = flags.DEFINE_enum('weighting', 'uniform', server.WEIGHTINGS,
                               "uniform: the seed's 1/K mean; num_examples: example-weighted.")
_ROUNDS = flags.DEFINE_integer('rounds', None, 'Rounds; default 50 for fedsgd, 20 for fedavg.')
_LR = flags.DEFINE_float('lr', 0.1, 'FedSGD: server learning rate; FedAvg: client learning rate.')
_SERVER_LR = flags.DEFINE_float('server_lr', 1.0, 'FedAvg server learning rate.')
_SERVER_MOMENTUM = flags.DEFINE_float('server_momentum', 0.0, 'Server SGD momentum in [0, 1).')
_LOCAL_EPOCHS = flags.DEFINE_integer('local_epochs', 1, 'FedAvg local epochs.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 0, 'FedAvg local batch size (unshuffled); '
                                   '0: full batch.')
_DTYPE = flags.DEFINE_enum('numpy_dtype', 'float32', ['float32', 'float64'],
                           "NumPy's precision (TFF runs float32; compare like with like).")
_TFF_MODEL = flags.DEFINE_enum('tff_model', 'dense', tff_reference.KERAS_MODELS,
                               "TFF's Keras model: dense, a Dense(1) on logits; credit, the credit "
                               "job's own scorecard model (sigmoid output; logistic only).")
_TOLERANCE = flags.DEFINE_float('tolerance', 1e-5, 'Largest acceptable max |w_numpy - w_tff|.')

# Asynchronous study (NumPy only: TFF has no asynchronous mode)
_ASYNC_BUFFER = flags.DEFINE_integer('async_buffer', 0, 'Server steps after every B arrived '
                                     'updates; 0 skips the study.')
_DELAYS = flags.DEFINE_enum('delay_distribution', 'lognormal', asynchronous.DISTRIBUTIONS,
                            'Heavy-tailed distribution of simulated client job durations.')
_SPREAD = flags.DEFINE_float('delay_spread', 1.0, 'lognormal sigma, or 1/tail index for pareto; '
                             '0: every job takes the same time.')
_STALENESS = flags.DEFINE_float('staleness_exponent', 0.5,
                                'Updates are scaled by 1 / (1 + staleness) ** exponent.')
_ASYNC_ROUNDS = flags.DEFINE_integer('async_rounds', None, 'Synchronous rounds of the study '
                                     '(async runs for the same simulated time); default --rounds.')
_TARGET_LOSS = flags.DEFINE_float('target_loss', None, 'Loss both protocols race to; default: '
                                  '--target_fraction of the decrease the synchronous loop achieves.')
_TARGET_FRACTION = flags.DEFINE_float('target_fraction', 0.95, 'See --target_loss; in (0, 1].')

# Output
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where CSVs, plots and summary.json go.')
flags.mark_flag_as_required('output_dir')


def _config():
  from numpy_fl import comparison  # pylint: disable=g-import-not-at-top
  rounds = _ROUNDS.value or (50 if _ALGORITHM.value == 'fedsgd' else 20)
  model = _MODEL.value or ('logistic' if _DATA.value == 'credit' else 'linear')
  checks = [
      (_BANKS.value >= 1, f'--banks must be at least 1, got {_BANKS.value}'),
      (rounds >= 1, f'--rounds must be at least 1, got {rounds}'),
      (_LR.value > 0, f'--lr must be positive, got {_LR.value}'),
      (_SERVER_LR.value > 0, f'--server_lr must be positive, got {_SERVER_LR.value}'),
      (0 <= _SERVER_MOMENTUM.value < 1, f'--server_momentum must be in [0, 1), got {_SERVER_MOMENTUM.value}'),
      (_LOCAL_EPOCHS.value >= 1, f'--local_epochs must be at least 1, got {_LOCAL_EPOCHS.value}'),
      (_BATCH_SIZE.value >= 0, f'--batch_size must be 0 (full batch) or positive, got {_BATCH_SIZE.value}'),
      (0 <= _ASYNC_BUFFER.value <= _BANKS.value,
       f'--async_buffer must be in [0, --banks={_BANKS.value}], got {_ASYNC_BUFFER.value}'),
      (_SPREAD.value >= 0, f'--delay_spread must be non-negative, got {_SPREAD.value}'),
      (_TFF_MODEL.value == 'dense' or model == 'logistic',
       f'--tff_model=credit is logistic regression; got --model={model}'),
      (0 < _TARGET_FRACTION.value <= 1,
       f'--target_fraction must be in (0, 1], got {_TARGET_FRACTION.value}'),
      (_FEATURES.value >= 1, f'--synthetic_features must be at least 1, got {_FEATURES.value}'),
  ]
  for ok, message in checks:
    if not ok:
      raise InputError(message)
  return comparison.Config(
      algorithm=_ALGORITHM.value,
      model=model,
      weighting=_WEIGHTING.value, rounds=rounds, lr=_LR.value, server_lr=_SERVER_LR.value,
      server_momentum=_SERVER_MOMENTUM.value, local_epochs=_LOCAL_EPOCHS.value,
      batch_size=_BATCH_SIZE.value or None, seed=_SEED.value, dtype=_DTYPE.value,
      tff_model=_TFF_MODEL.value,
      tolerance=_TOLERANCE.value, async_buffer=_ASYNC_BUFFER.value,
      delay_distribution=_DELAYS.value, delay_spread=_SPREAD.value,
      staleness_exponent=_STALENESS.value, async_rounds=_ASYNC_ROUNDS.value,
      target_loss=_TARGET_LOSS.value, target_fraction=_TARGET_FRACTION.value)


def _bank_arrays(config):
  if _DATA.value == 'credit':
    from tff_credit import federation  # pylint: disable=g-import-not-at-top
    arrays = federation.build_federation(federation.DataConfig(
        banks=_BANKS.value, partition=_PARTITION.value, seed=_SEED.value)).train
  else:
    from numpy_fl import synthetic  # pylint: disable=g-import-not-at-top
    arrays, _ = synthetic.linear_problem(clients=_BANKS.value, features=_FEATURES.value,
                                         seed=_SEED.value)
  if config.model == 'logistic':
    for name, (_, y) in arrays.items():
      if not set(y.tolist()) <= {0.0, 1.0}:
        raise InputError(f'--model=logistic needs 0/1 labels; client {name!r} has others '
                         f'(use --model=linear for --data={_DATA.value})')
  return arrays


def main(argv):
  if len(argv) > 1:
    raise InputError(f'unexpected arguments: {" ".join(argv[1:])}')
  config = _config()
  # pylint: disable=g-import-not-at-top
  from tff_common import runtime
  from numpy_fl import comparison
  # pylint: enable=g-import-not-at-top
  runtime.install_execution_context()
  summary = comparison.run(config, bank_arrays=_bank_arrays(config),
                           make_reference=tff_reference.runner_for,
                           output_dir=_OUTPUT_DIR.value, log=lambda s: print(s, flush=True))
  if not summary['within_tolerance']:
    sys.exit(1)


if __name__ == '__main__':
  cli.run(main)

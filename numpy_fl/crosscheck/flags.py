"""Command-line flags of `python -m numpy_fl.crosscheck` (definitions only; each
flag is named after the field of `lockstep.DataConfig` or `lockstep.Config` it
sets: `tff_common.cli.config_from_flags`)."""

from absl import flags

from numpy_fl import asynchronous
from numpy_fl import server
from numpy_fl.crosscheck import lockstep
from numpy_fl.crosscheck import tff_twin
from tff_common import cli
from tff_credit import banks

_D = lockstep.DataConfig()
_C = lockstep.Config()


def define_output_dir():
  cli.define_output_dir('Where CSVs, plots and summary.json go.')


def define_data_flags():
  """Flags of `lockstep.DataConfig` (`--seed` also sets `Config.seed`)."""
  flags.DEFINE_enum('data', _D.data, ['credit', 'synthetic'],
                    'credit: the bundled credit data split into banks; '
                    'synthetic: the textbook synthetic linear regression problem.')
  flags.DEFINE_integer('banks', _D.banks, 'Number of clients (banks).')
  flags.DEFINE_enum('partition', _D.partition, banks.PARTITIONS,
                    "How the credit data is split into banks (tff_credit's partitions).")
  flags.DEFINE_integer('synthetic_features', _D.synthetic_features,
                       'Features of the synthetic problem.')
  flags.DEFINE_integer('seed', _D.seed, 'Seeds data split, initial weights and delays.')


def define_run_flags():
  """Flags of `lockstep.Config` for what both engines run (but `--seed`, a data flag)."""
  flags.DEFINE_enum('model', _C.model, ['linear', 'logistic'],
                    'Default: logistic for credit, linear for synthetic.')
  flags.DEFINE_enum('algorithm', _C.algorithm, ['fedsgd', 'fedavg'], 'What both engines run.')
  flags.DEFINE_enum('weighting', _C.weighting, server.WEIGHTINGS,
                    'uniform: the textbook FedSGD 1/K mean; num_examples: example-weighted.')
  flags.DEFINE_integer('rounds', _C.rounds, 'Rounds; default 50 for fedsgd, 20 for fedavg.')
  flags.DEFINE_float('lr', _C.lr, 'FedSGD: server learning rate; FedAvg: client learning rate.')
  flags.DEFINE_float('server_lr', _C.server_lr, 'FedAvg server learning rate.')
  flags.DEFINE_float('server_momentum', _C.server_momentum, 'Server SGD momentum in [0, 1).')
  flags.DEFINE_integer('local_epochs', _C.local_epochs, 'FedAvg local epochs.')
  # 0 on the command line; `Config.resolved` makes it None (the field's default).
  flags.DEFINE_integer('batch_size', 0, 'FedAvg local batch size (unshuffled); 0: full batch.')
  flags.DEFINE_enum('numpy_dtype', _C.numpy_dtype, ['float32', 'float64'],
                    "NumPy's precision (TFF runs float32; compare like with like).")
  flags.DEFINE_enum('tff_model', _C.tff_model, tff_twin.KERAS_MODELS,
                    "TFF's Keras model: dense, a Dense(1) on logits; credit, the credit "
                    "job's own scorecard model (sigmoid output; logistic only).")
  flags.DEFINE_float('tolerance', _C.tolerance, 'Largest acceptable max |w_numpy - w_tff|.')


def define_race_flags():
  """Flags of `lockstep.Config` for the asynchronous study (NumPy only: TFF has no
  asynchronous mode)."""
  flags.DEFINE_integer('async_buffer', _C.async_buffer,
                       'Server steps after every B arrived updates; 0 skips the study.')
  flags.DEFINE_enum('delay_distribution', _C.delay_distribution, asynchronous.DISTRIBUTIONS,
                    'Heavy-tailed distribution of simulated client job durations.')
  flags.DEFINE_float('delay_spread', _C.delay_spread, 'lognormal sigma, or 1/tail index for '
                     'pareto; 0: every job takes the same time.')
  flags.DEFINE_float('staleness_exponent', _C.staleness_exponent,
                     'Updates are scaled by 1 / (1 + staleness) ** exponent.')
  flags.DEFINE_integer('async_rounds', _C.async_rounds, 'Synchronous rounds of the study '
                       '(async runs for the same simulated time); default --rounds.')
  flags.DEFINE_float('target_loss', _C.target_loss, 'Loss both protocols race to; default: '
                     '--target_fraction of the decrease the synchronous loop achieves.')
  flags.DEFINE_float('target_fraction', _C.target_fraction, 'See --target_loss; in (0, 1].')


def configs(values=None) -> tuple[lockstep.Config, lockstep.DataConfig]:
  """The two configs from the parsed flags (as given: `lockstep.run` resolves them)."""
  return (cli.config_from_flags(lockstep.Config, values),
          cli.config_from_flags(lockstep.DataConfig, values))

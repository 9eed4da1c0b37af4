"""What every binary does around its `main`: quiet logs, the TFF runtime, one-line
input errors and interruptions (exit codes: `tff_common.errors`), and flags
mapped onto config dataclasses.

Import this module first in a binary, before anything that imports TensorFlow:
importing it imports TF and TFF quietly (`quiet.import_tensorflow`), which only
works before TF's C++ core has started logging. Then, at the bottom:

    if __name__ == '__main__':
      cli.run(main)

The runtime rule: a process installs TFF's execution context once, before its
first federated computation. For binaries that one place is `run` (below); for
the tests it is `tests/conftest.py`; a library caller (a notebook, a bench
script) calls `tff_common.runtime.install_execution_context()` itself. Library
code never installs it.
"""

import dataclasses
import signal
import sys

from tff_common import quiet

quiet.import_tensorflow()

from absl import app
from absl import flags
from absl import logging

from tff_common import aggregation
from tff_common import dp
from tff_common import errors
from tff_common import program_config
from tff_common import runtime


def run(main, *, federated: bool = True):
  """`app.run(main)`, with absl INFO lines off, TFF's runtime installed first
  (unless the binary runs no federated computation), and the exit codes of
  `tff_common.errors`: an `InputError` (or `TrainingFailed`) is printed as one
  line `error: ...` with exit 2; SIGINT / SIGTERM as one line (`interrupted`,
  or the round to resume from when `tff_common.program` was training) with
  exit 130 / 143; anything else is a bug and keeps its traceback (exit 1)."""

  def guarded(argv):
    # absl turns on INFO logging after parsing flags; keep warnings and errors
    # unless the user asked for more with --verbosity.
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    try:
      # SIGTERM raises (so atexit stops the worker) even in a binary that
      # runs no federated computation.
      runtime.install_signal_handlers()
      if federated:
        install_runtime_from_flags()
      return main(argv)
    except errors.InputError as e:
      _exit(f'error: {e}', 2)
    except errors.Interrupted as e:
      _exit(e.message, e.exit_code)
    except KeyboardInterrupt:
      _exit('interrupted', 128 + signal.SIGINT)

  if federated:
    define_runtime_flags()
  app.run(guarded, flags_parser=_parse_flags)


def define_runtime_flags():
  """`--workers` and `--local_workers`: where the federated computations run
  (`tff_common.runtime`). Defined here once, by `run`, for every binary that
  runs them."""
  if 'local_workers' in flags.FLAGS:
    return
  flags.DEFINE_list('workers', [],
                    'host:port of running TFF workers to compute on (start one on a host with '
                    '`python -m tff_common.worker --port=PORT`; see docs/DEPLOYMENT.md). Each '
                    "round's clients are split among all workers, local and remote.")
  flags.DEFINE_integer('local_workers', None,
                       'TFF workers to start on this machine, stopped with this process '
                       '(default: 1, or 0 with --workers).')


def install_runtime_from_flags():
  """TFF's runtime on the workers of `--workers` / `--local_workers` (a bad
  value or an unreachable worker is an `errors.InputError`)."""
  runtime.install_execution_context(workers=flags.FLAGS.workers,
                                    local_workers=flags.FLAGS.local_workers)


def _parse_flags(argv):
  """absl's parsing, with a bad flag as one line and exit 2 like any bad input
  (absl's own prints two lines and exits 1, the code of a bug)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _exit(f'error: {" ".join(str(e).split())}; see --help', 2)


def _exit(line: str, code: int):
  if code != 2:
    # Interrupted: a second Ctrl-C (or a TERM after the INT) while atexit stops
    # the worker would print a traceback from inside atexit; the one line
    # already said what happened, and stopping the worker is bounded (a few
    # seconds, then SIGKILL).
    for signum in (signal.SIGINT, signal.SIGTERM):
      signal.signal(signum, signal.SIG_IGN)
  print(line, file=sys.stderr, flush=True)
  sys.exit(code)


def define_output_dir(help_text: str):
  flags.DEFINE_string('output_dir', None, help_text, required=True)


def define_program_flags(defaults: program_config.ProgramConfig):
  """The flags of `program_config.ProgramConfig`, with a job's defaults."""
  flags.DEFINE_integer('rounds', defaults.rounds,
                       'Total federated rounds. Rerunning the same command resumes from the '
                       'last checkpoint; a larger value trains further.')
  flags.DEFINE_integer('clients_per_round', defaults.clients_per_round,
                       'Clients sampled each round (default: '
                       f'{"all" if defaults.clients_per_round is None else defaults.clients_per_round}).')
  flags.DEFINE_integer('rounds_per_checkpoint', defaults.rounds_per_checkpoint,
                       'Checkpoint period in rounds (the last round always saves).')
  flags.DEFINE_enum('client_sampling', defaults.client_sampling,
                    list(program_config.CLIENT_SAMPLINGS),
                    'fixed: exactly --clients_per_round clients a round, without replacement; '
                    'poisson: each client with probability clients_per_round / population '
                    '(the sampling that gives differential privacy its smaller epsilon).')
  flags.DEFINE_integer('seed', defaults.seed,
                       'Seeds everything random in the run: data split, client sampling, '
                       'shuffling, initialization.')


def define_aggregator_flags(defaults: aggregation.AggregatorConfig):
  """The flags of `aggregation.AggregatorConfig`, with a job's defaults."""
  flags.DEFINE_enum('aggregator', defaults.aggregator, list(aggregation.NAMES),
                    'How the server aggregates client updates: mean (float32 updates); '
                    'compressed (each client quantizes its update to --quantization_bits bits); '
                    'topk / randk (each client sends --keep_fraction of each tensor: the largest '
                    'values, or random ones scaled up); '
                    'secure (secure aggregation: the server learns only the sum; simulated); '
                    "robust (TFF's adaptive zeroing and norm clipping, then the mean); "
                    'median or trimmed_mean (coordinate-wise, unweighted; see --trim_fraction); '
                    'filtered_mean (drops updates pointing away from the coordinate-wise median, '
                    'clips the rest to the median norm, weighted mean: --min_cosine, '
                    '--norm_multiplier).')
  flags.DEFINE_integer('quantization_bits', defaults.quantization_bits,
                       'Bits per value of a compressed update (1 to 16).')
  flags.DEFINE_integer('compression_threshold', defaults.compression_threshold,
                       'Tensors with at most this many values are sent uncompressed.')
  flags.DEFINE_float('keep_fraction', defaults.keep_fraction,
                     'Under --aggregator=topk or randk, the fraction of each tensor\'s values a '
                     'client sends, in (0, 1].')
  flags.DEFINE_float('min_cosine', defaults.min_cosine,
                     'Under --aggregator=filtered_mean, the smallest cosine between an update and '
                     'the coordinate-wise median for the update to count.')
  flags.DEFINE_float('norm_multiplier', defaults.norm_multiplier,
                     'Under --aggregator=filtered_mean, kept updates are clipped to this times the '
                     'median update norm (inf: no clipping).')
  flags.DEFINE_float('trim_fraction', defaults.trim_fraction,
                     'Under --aggregator=trimmed_mean, the share of clients dropped at each end '
                     'of every coordinate (0 to 0.5).')


def define_dp_flags(defaults: dp.DPConfig, *, what: str):
  """The flags of `dp.DPConfig`, with a job's defaults; `what` names what is
  clipped and noised (e.g. "each user's update")."""
  flags.DEFINE_float('dp_noise_multiplier', defaults.dp_noise_multiplier,
                     f'Differential privacy: Gaussian noise of this many times --dp_clip on '
                     f'the sum of {what}, each clipped to --dp_clip. 0 (and no '
                     '--target_epsilon): no differential privacy.')
  flags.DEFINE_float('dp_clip', defaults.dp_clip, f'L2 clip norm of {what}.')
  flags.DEFINE_float('target_epsilon', defaults.target_epsilon,
                     'Calibrate the noise multiplier before training so that the run\'s '
                     'epsilon (at --dp_delta) is at most this.')
  flags.DEFINE_float('dp_delta', defaults.dp_delta,
                     'The delta of the reported (epsilon, delta) guarantee. Default: 1/population '
                     'rounded down to a power of ten.')
  flags.DEFINE_float('dp_adaptive_quantile', defaults.dp_adaptive_quantile,
                     'Adaptive clipping (Andrew et al. 2021): the clip starts at --dp_clip and '
                     f'follows this quantile of the norms of {what} (0.5: the median); part of '
                     'the noise goes to the count of unclipped clients, and the epsilon covers '
                     'both. Unset: a fixed --dp_clip.')
  flags.DEFINE_float('dp_adaptive_lr', defaults.dp_adaptive_lr,
                     'Adaptive clipping: the clip changes by at most a factor exp(this) a round.')


def config_from_flags(config_class, values=None):
  """An instance of the dataclass `config_class` whose every field is the flag
  of the same name."""
  values = flags.FLAGS if values is None else values
  return config_class(**{f.name: getattr(values, f.name)
                         for f in dataclasses.fields(config_class)})

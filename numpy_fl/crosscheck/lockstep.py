"""The NumPy engine and its TFF twin in lockstep: same clients, start and learning rates.

Runs on the Python orchestrator (TFF's rounds in its C++ runtime, which the
caller installs). Both engines start from the same weights, see the same
clients in the same order and step one round at a time, so after every round
their weights can be compared (`RoundRow.max_abs_diff`) and their losses put on
one plot. `run` is the whole cross-check: the data, the lockstep rounds, their
timing, and (with `Config.async_buffer`) the NumPy-only sync vs async race;
`report` writes what it finds.
"""

import dataclasses
import math
import statistics
import time
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Callable
from typing import Optional

import numpy as np

from numpy_fl import algorithms
from numpy_fl import asynchronous
from numpy_fl import client as client_lib
from numpy_fl import models
from numpy_fl import server as server_lib
from numpy_fl import synthetic
from numpy_fl.crosscheck import report
from numpy_fl.crosscheck import tff_twin
from tff_common import checks
from tff_common import run_dir
from tff_common.errors import InputError
from tff_credit import config as credit_config
from tff_credit import federation

BankArrays = Mapping[str, tuple[np.ndarray, np.ndarray]]  # client name -> (x [n, d], y [n])


# The exit code of `python -m numpy_fl.crosscheck` when the engines' weights
# differ by more than --tolerance: not 1 (a bug) nor 2 (bad input).
EXIT_DISAGREE = 3

@dataclasses.dataclass(frozen=True)
class RoundRow:
  round_num: int
  numpy_loss: float      # global loss of NumPy's weights after the round
  tff_loss: float        # the same loss function at the twin's weights
  max_abs_diff: float    # max_i |w_numpy_i - w_tff_i|
  numpy_seconds: float   # wall time of the round (client work + server step)
  tff_seconds: float     # wall time of the twin's `next` (the round alone)
  # The twin's own training loss of the round (Keras' loss, averaged over
  # examples by TFF), measured on the model the clients received, so for
  # FedSGD it equals `numpy_loss` of the previous row: a check of the loss
  # functions themselves, independent of the weights. NaN if not reported.
  tff_reported_loss: float = math.nan


def side_by_side(*, server: server_lib.Server, clients: Sequence[client_lib.Client],
                 algorithm, twin, rounds: int,
                 log: Optional[Callable[[str], None]] = print) -> list[RoundRow]:
  """Runs both engines for `rounds` rounds; row 0 is the shared starting point.

  Args:
    twin: Anything with `next()` (one round) and `weights` (flat, NumPy's
      layout), such as `tff_twin.ProcessRunner`; optionally `reported_loss()`.
  """
  start_tff = np.asarray(twin.weights)
  start = server.weights
  loss0 = algorithms.global_loss(clients, start)
  rows = [RoundRow(0, loss0, algorithms.global_loss(clients, start_tff.astype(start.dtype)),
                   _max_abs_diff(start, start_tff), 0.0, 0.0)]
  reported_loss = getattr(twin, 'reported_loss', lambda: math.nan)
  for round_num in range(1, rounds + 1):
    started = time.perf_counter()
    algorithms.run_round(server, clients, algorithm, round_num=round_num)
    numpy_seconds = time.perf_counter() - started
    started = time.perf_counter()
    twin.next()
    tff_seconds = time.perf_counter() - started
    tff_weights = np.asarray(twin.weights)  # read outside the timed round
    weights = server.weights
    rows.append(RoundRow(
        round_num,
        algorithms.global_loss(clients, weights),
        algorithms.global_loss(clients, tff_weights.astype(weights.dtype)),
        _max_abs_diff(weights, tff_weights), numpy_seconds, tff_seconds, reported_loss()))
    if log is not None:
      log(format_row(rows[-1], rounds))
  return rows


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
  # Compared in float64 so the difference itself adds no rounding.
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def format_row(row: RoundRow, rounds: int) -> str:
  return (f'round {row.round_num:>{len(str(rounds))}}/{rounds}  '
          f'loss numpy {row.numpy_loss:.6f}  tff {row.tff_loss:.6f}  '
          f'max|dw| {row.max_abs_diff:.2e}  '
          f'time numpy {row.numpy_seconds * 1e3:.3f} ms  tff {row.tff_seconds * 1e3:.1f} ms')


def timing_summary(rows: Sequence[RoundRow]) -> dict:
  """Per-round wall times and the TFF/NumPy ratio.

  The first TFF round also pays for the first execution of the computation
  in the runtime, so the steady-state figures use rounds 2.. when there are any.
  """
  trained = [r for r in rows if r.round_num >= 1]
  steady = [r for r in trained if r.round_num >= 2] or trained
  numpy_median = statistics.median(r.numpy_seconds for r in steady)
  tff_median = statistics.median(r.tff_seconds for r in steady)
  numpy_total = sum(r.numpy_seconds for r in trained)
  tff_total = sum(r.tff_seconds for r in trained)
  return {
      'rounds': len(trained),
      'numpy_seconds_per_round_median': numpy_median,
      'tff_seconds_per_round_median': tff_median,
      'tff_over_numpy_median': tff_median / numpy_median,
      'numpy_seconds_total': numpy_total,
      'tff_seconds_total': tff_total,
      'tff_over_numpy_total': tff_total / numpy_total,
      'tff_first_round_seconds': trained[0].tff_seconds,
      'max_abs_diff': max(r.max_abs_diff for r in rows),
  }


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The clients both engines train on (the binary's flags of the same names)."""
  data: str = 'credit'            # 'credit': the bundled credit data split into banks;
                                  # 'synthetic': `numpy_fl.synthetic.linear_problem`
  banks: int = 5                  # clients
  partition: str = 'iid'          # credit only: a `tff_credit.banks.PARTITIONS` name
  synthetic_features: int = 10    # synthetic only
  seed: int = 0                   # the data split (credit) or the problem (synthetic)


def load_bank_arrays(data: DataConfig, *, model: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """client name -> (x float32 [n, d], y float32 [n]), the clients in a fixed order.

  The credit banks' training rows come from the credit job's own federation
  (its partitions and federated encoding; a TFF computation, so the runtime
  must be installed). Raises `InputError` if `model='logistic'` meets labels
  other than 0/1.
  """
  if data.data == 'credit':
    # Every training row (no validation split): the crosscheck compares engines,
    # it does not select a model.
    arrays = federation.build_federation(credit_config.DataConfig(
        banks=data.banks, partition=data.partition, seed=data.seed, val_fraction=0.0)).train
  elif data.data == 'synthetic':
    arrays, _ = synthetic.linear_problem(clients=data.banks, features=data.synthetic_features,
                                         seed=data.seed)
  else:
    raise InputError(f'--data must be credit or synthetic, got {data.data!r}')
  if model == 'logistic':
    for name, (_, y) in arrays.items():
      if not set(y.tolist()) <= {0.0, 1.0}:
        raise InputError(f'--model=logistic needs 0/1 labels; client {name!r} has others '
                         f'(use --model=linear for --data={data.data})')
  return arrays


@dataclasses.dataclass(frozen=True)
class Config:
  """One cross-check run: the algorithm both engines run, and the async study.

  Every field is the binary's flag of the same name (`numpy_fl.crosscheck.flags`),
  with the same default. Three defaults depend on other settings; `resolved`
  fills them in (`run` does), and `check` validates the result.
  """
  algorithm: str = 'fedsgd'          # 'fedsgd' or 'fedavg'
  model: Optional[str] = None        # 'linear' or 'logistic'; None: logistic for
                                     # credit data, linear for synthetic
  weighting: str = 'uniform'         # 'uniform' (1/K) or 'num_examples'
  rounds: Optional[int] = None       # None: 50 for fedsgd, 20 for fedavg
  lr: float = 0.1                    # FedSGD: server lr; FedAvg: client lr
  server_lr: float = 1.0             # FedAvg only
  server_momentum: float = 0.0
  local_epochs: int = 1              # FedAvg only
  batch_size: Optional[int] = None   # FedAvg only; None (or 0): full batch
  seed: int = 0                      # initial weights, delays
  numpy_dtype: str = 'float32'       # NumPy's; TFF's is float32
  tff_model: str = 'dense'           # TFF's Keras model: 'dense' or 'credit' (the credit job's)
  tolerance: float = 1e-5
  async_buffer: int = 0              # 0: no async study
  delay_distribution: str = 'lognormal'
  delay_spread: float = 1.0
  staleness_exponent: float = 0.5
  async_rounds: Optional[int] = None  # synchronous rounds of the async study; None: `rounds`
  target_loss: Optional[float] = None
  target_fraction: float = 0.95      # used when target_loss is None

  def resolved(self, data: DataConfig) -> 'Config':
    """This config with the defaults that depend on other settings filled in:
    `rounds` None (by the algorithm), `model` None (by `data.data`) and
    `batch_size` 0 (None, the full batch). Resolving twice changes nothing."""
    rounds = self.rounds
    if rounds is None:
      rounds = 50 if self.algorithm == 'fedsgd' else 20
    return dataclasses.replace(
        self, rounds=rounds,
        model=self.model or ('logistic' if data.data == 'credit' else 'linear'),
        batch_size=self.batch_size or None)

  def check(self, data: DataConfig):
    """Raises `InputError` naming the first flag out of range, of this config
    (resolved against `data` first) and of `data` (`tff_common.checks`)."""
    c = self.resolved(data)
    checks.at_least('banks', data.banks, 1)
    checks.at_least('seed', data.seed, 0)
    checks.at_least('rounds', c.rounds, 1)
    checks.positive('lr', c.lr)
    checks.positive('server_lr', c.server_lr)
    checks.in_range('server_momentum', c.server_momentum, 0, 1, high_open=True)
    checks.at_least('local_epochs', c.local_epochs, 1)
    checks.optional_at_least('batch_size', c.batch_size, 1)
    if not 0 <= c.async_buffer <= data.banks:
      checks.fail('async_buffer', c.async_buffer, f'an integer in [0, --banks={data.banks}]')
    checks.non_negative('delay_spread', c.delay_spread)
    if not (c.tff_model == 'dense' or c.model == 'logistic'):
      checks.fail('tff_model', c.tff_model, f"'dense' with --model={c.model} (credit is "
                  'logistic regression)')
    checks.in_range('target_fraction', c.target_fraction, 0, 1, low_open=True)
    checks.optional_at_least('async_rounds', c.async_rounds, 1)
    checks.non_negative('staleness_exponent', c.staleness_exponent)
    if c.target_loss is not None and not math.isfinite(c.target_loss):
      checks.fail('target_loss', c.target_loss, 'a finite number')
    checks.positive('tolerance', c.tolerance)
    checks.at_least('synthetic_features', data.synthetic_features, 1)


def build_numpy(config: Config, bank_arrays: BankArrays):
  """NumPy side of a cross-check.

  Returns:
    (clients in the mapping's order, a factory of fresh servers at the initial
    weights, the algorithm, the initial weights).
  """
  if not bank_arrays:
    raise ValueError('no clients to compare on')
  if config.model is None:
    raise ValueError('config.model is None: resolve the config first (Config.resolved)')
  dtype = models.DTYPES[config.numpy_dtype]
  model = models.get_model(config.model)
  clients = [client_lib.Client(x, y, model=model, dtype=dtype, name=name)
             for name, (x, y) in bank_arrays.items()]
  num_features = clients[0].x.shape[1]
  for c in clients:
    if c.x.shape[1] != num_features:
      raise ValueError(f'client {c.name!r} has {c.x.shape[1]} features, '
                       f'client {clients[0].name!r} has {num_features}')
  initial = models.initial_weights(num_features=num_features, dtype=dtype, seed=config.seed)
  if config.algorithm == 'fedsgd':
    algorithm, server_lr = algorithms.FedSGD(), config.lr
  elif config.algorithm == 'fedavg':
    algorithm = algorithms.FedAvg(client_lr=config.lr, epochs=config.local_epochs,
                                  batch_size=config.batch_size)
    server_lr = config.server_lr
  else:
    raise ValueError(f'unknown algorithm {config.algorithm!r}')

  def make_server():
    return server_lib.Server(initial, lr=server_lr, momentum=config.server_momentum,
                             weighting=config.weighting)

  return clients, make_server, algorithm, initial


def run(config: Config, data: DataConfig, *, output_dir: str,
        log: Callable[[str], None] = print) -> dict:
  """The cross-check of `python -m numpy_fl.crosscheck`: `config` resolved
  against `data` and checked (`Config.resolved`, `Config.check`: `InputError`
  before any work), then `run_on_arrays` on `data`'s clients."""
  config = config.resolved(data)
  config.check(data)
  # An output directory that cannot be made stops us before the rounds, in one line.
  run_dir.RunDir(output_dir).makedirs()
  return run_on_arrays(config, load_bank_arrays(data, model=config.model),
                       output_dir=output_dir, log=log)


def run_on_arrays(config: Config, bank_arrays: BankArrays, *, output_dir: str,
                  make_twin: Callable = tff_twin.twin_for,
                  log: Callable[[str], None] = print) -> dict:
  """NumPy vs its TFF twin in lockstep, then (if asked) sync vs async in NumPy.

  Args:
    config: A resolved config (`Config.resolved`).
    bank_arrays: client name -> (x [n, d], y [n]).
    make_twin: `(config, bank_arrays, initial_weights) -> twin` (see `side_by_side`).
    output_dir: Receives compare.csv, compare.png, summary.json and, with
      `async_buffer`, async.csv and async.png.

  Returns:
    The summary also written to summary.json; `within_tolerance` says whether
    the largest parameter difference met `config.tolerance`.
  """
  if config.rounds is None:
    raise ValueError('config.rounds is None: resolve the config first (Config.resolved)')
  clients, make_server, algorithm, initial = build_numpy(config, bank_arrays)
  sizes = ', '.join(f'{c.name} {c.num_examples}' for c in clients)
  log(f'{config.algorithm} ({config.weighting} mean), {config.model} model, '
      f'{len(clients)} clients ({sizes}), {clients[0].x.shape[1]} features, '
      f'NumPy {config.numpy_dtype}')
  twin = make_twin(config, bank_arrays, initial)
  rows = side_by_side(server=make_server(), clients=clients, algorithm=algorithm,
                      twin=twin, rounds=config.rounds, log=log)
  timing = timing_summary(rows)
  summary = {'config': dataclasses.asdict(config),
             'clients': {c.name: c.num_examples for c in clients},
             **timing,
             'within_tolerance': timing['max_abs_diff'] <= config.tolerance}
  log(f'max |dw| over {config.rounds} rounds: {timing["max_abs_diff"]:.3g} '
      f'(tolerance {config.tolerance:g}: {"ok" if summary["within_tolerance"] else "EXCEEDED"})')
  steady = f'rounds 2..{config.rounds}' if config.rounds > 1 else 'round 1'
  log(f'time per round (median of {steady}): '
      f'NumPy {timing["numpy_seconds_per_round_median"] * 1e3:.3f} ms, '
      f'TFF {timing["tff_seconds_per_round_median"] * 1e3:.1f} ms; '
      f'TFF/NumPy {timing["tff_over_numpy_median"]:.0f}x '
      f'(totals incl. TFF first round {timing["tff_first_round_seconds"]:.2f} s: '
      f'{timing["tff_over_numpy_total"]:.0f}x)')
  report.write_lockstep(rows, output_dir,
                        title=f'{config.algorithm}, {len(clients)} clients: NumPy vs TFF')

  if config.async_buffer:
    delays = asynchronous.Delays(distribution=config.delay_distribution,
                                 spread=config.delay_spread, seed=config.seed)
    race = asynchronous.race_sync_async(
        make_server=make_server, clients=clients, algorithm=algorithm, delays=delays,
        buffer_size=config.async_buffer, rounds=config.async_rounds or config.rounds,
        staleness_exponent=config.staleness_exponent, target_loss=config.target_loss,
        target_fraction=config.target_fraction)
    summary['async'] = race.summary()
    log(f'sync vs async (buffer {config.async_buffer} of {len(clients)} clients, '
        f'{config.delay_distribution} delays, spread {config.delay_spread:g}):')
    for line in report.race_summary_lines(summary['async']):
      log('  ' + line)
    report.write_race(race, output_dir,
                      title=f'{config.algorithm}: sync vs async (B={config.async_buffer})')
  report.write_summary(summary, output_dir)
  log(f'wrote compare.csv, compare.png{", async.csv, async.png" if config.async_buffer else ""}'
      f', summary.json to {output_dir}')
  return summary

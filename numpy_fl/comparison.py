"""Side-by-side runs of the NumPy engine and a reference engine (TFF), and their reports.

Runs on the Python orchestrator. The reference is anything with `next()`
(one round) and `weights` (flat, NumPy's layout), such as
`numpy_fl.tff_reference.Runner`; optionally `reported_loss()`. This module
itself imports no TensorFlow. Both engines start from the same weights, see
the same clients in the same order and step in lockstep, so after every round
their weights can be compared and their losses put on one plot.
"""

import csv
import dataclasses
import io
import math
import os
import statistics
import time
from collections.abc import Sequence
from typing import Callable, Optional

import numpy as np

from numpy_fl import algorithms
from numpy_fl import asynchronous
from numpy_fl import client as client_lib
from numpy_fl import models
from numpy_fl import server as server_lib
from tff_common import files


@dataclasses.dataclass(frozen=True)
class RoundRow:
  round_num: int
  numpy_loss: float      # global loss of NumPy's weights after the round
  tff_loss: float        # the same loss function at the reference's weights
  max_abs_diff: float    # max_i |w_numpy_i - w_tff_i|
  numpy_seconds: float   # wall time of the round (client work + server step)
  tff_seconds: float     # wall time of the reference's `next` (the round alone)
  # The reference's own training loss of the round (Keras' loss, averaged
  # over examples by TFF), measured on the model the clients received, so
  # for FedSGD it equals `numpy_loss` of the previous row: a check of the loss
  # functions themselves, independent of the weights. NaN if not reported.
  tff_reported_loss: float = math.nan


def side_by_side(*, server: server_lib.Server, clients: Sequence[client_lib.Client],
                 algorithm, reference, rounds: int,
                 log: Optional[Callable[[str], None]] = print) -> list[RoundRow]:
  """Runs both engines for `rounds` rounds; row 0 is the shared starting point."""
  start_tff = np.asarray(reference.weights)
  start = server.weights
  loss0 = algorithms.global_loss(clients, start)
  rows = [RoundRow(0, loss0, algorithms.global_loss(clients, start_tff.astype(start.dtype)),
                   _max_abs_diff(start, start_tff), 0.0, 0.0)]
  reported_loss = getattr(reference, 'reported_loss', lambda: math.nan)
  for round_num in range(1, rounds + 1):
    started = time.perf_counter()
    algorithms.run_round(server, clients, algorithm, round_num=round_num)
    numpy_seconds = time.perf_counter() - started
    started = time.perf_counter()
    reference.next()
    tff_seconds = time.perf_counter() - started
    tff_weights = np.asarray(reference.weights)  # read outside the timed round
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


def rows_csv(rows: Sequence[RoundRow]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  fields = [f.name for f in dataclasses.fields(RoundRow)]
  writer.writerow(fields)
  for row in rows:
    writer.writerow([_cell(getattr(row, f)) for f in fields])
  return out.getvalue()


def _cell(value) -> str:
  return f'{value:.9g}' if isinstance(value, float) else str(value)


def plot_losses(rows: Sequence[RoundRow], path: str, *, title: str):
  """The two loss curves on one axis (they should lie on top of each other)."""
  plt = _pyplot()
  fig, (ax_loss, ax_diff) = plt.subplots(1, 2, figsize=(11, 4))
  rounds = [r.round_num for r in rows]
  ax_loss.plot(rounds, [r.numpy_loss for r in rows], 'o-', ms=3, label='NumPy')
  ax_loss.plot(rounds, [r.tff_loss for r in rows], 'x--', ms=5, label='TFF')
  ax_loss.set_xlabel('round')
  ax_loss.set_ylabel('training loss (all clients)')
  ax_loss.set_title(title)
  ax_loss.legend()
  # Round 0 is an exact copy (difference 0), which a log axis cannot show.
  diffs = [(r.round_num, r.max_abs_diff) for r in rows if r.max_abs_diff > 0]
  if diffs:
    ax_diff.semilogy(*zip(*diffs), '.-')
  ax_diff.set_xlabel('round')
  ax_diff.set_ylabel('max |w_numpy - w_tff|')
  ax_diff.set_title('parameter difference')
  fig.tight_layout()
  files.save_figure(fig, path, dpi=120)
  plt.close(fig)


def async_csv(comparison: asynchronous.Comparison) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(['protocol', 'time', 'server_steps', 'client_updates', 'loss'])
  for trace in (comparison.sync, comparison.asynchronous):
    writer.writerow([trace.protocol, 0, 0, 0, _cell(trace.initial_loss)])
    for p in trace.points:
      writer.writerow([trace.protocol, _cell(p.time), p.server_steps, p.client_updates,
                       _cell(p.loss)])
  return out.getvalue()


def plot_async(comparison: asynchronous.Comparison, path: str, *, title: str):
  """Loss against simulated wall-clock time, sync vs async, with the target."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4))
  for trace, style in ((comparison.sync, 'o-'), (comparison.asynchronous, '.-')):
    times = [0.0] + [p.time for p in trace.points]
    losses = [trace.initial_loss] + [p.loss for p in trace.points]
    ax.plot(times, losses, style, ms=3, label=trace.protocol)
  ax.axhline(comparison.target_loss, color='gray', ls=':', label='target loss')
  ax.set_yscale('log')
  ax.set_xlabel('simulated wall-clock time')
  ax.set_ylabel('training loss (all clients)')
  ax.set_title(title)
  ax.legend()
  fig.tight_layout()
  files.save_figure(fig, path, dpi=120)
  plt.close(fig)


def format_async_summary(summary: dict) -> list[str]:
  lines = [f'target loss {summary["target_loss"]:.6f}']
  for protocol in ('sync', 'async'):
    s = summary[protocol]
    if s['time_to_target'] is None:
      reached = f'not reached by time {s["final_time"]:.2f} (final loss {s["final_loss"]:.6f})'
    else:
      reached = (f'reached at simulated time {s["time_to_target"]:.2f} after '
                 f'{s["server_steps_to_target"]} server steps, '
                 f'{s["client_updates_to_target"]} client updates')
    lines.append(f'{protocol:>5}: {reached}')
  if summary['speedup'] is not None:
    lines.append(f'async reaches the target {summary["speedup"]:.2f}x sooner in simulated time')
  return lines


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


@dataclasses.dataclass(frozen=True)
class Config:
  """One comparison run: the algorithm both engines run, and the async study."""
  algorithm: str                     # 'fedsgd' or 'fedavg'
  model: str                         # 'linear' or 'logistic'
  weighting: str                     # 'uniform' (1/K) or 'num_examples'
  rounds: int
  lr: float                          # FedSGD: server lr; FedAvg: client lr
  server_lr: float = 1.0             # FedAvg only
  server_momentum: float = 0.0
  local_epochs: int = 1              # FedAvg only
  batch_size: Optional[int] = None   # FedAvg only; None: full batch
  seed: int = 0                      # initial weights, delays
  dtype: str = 'float32'             # NumPy's; TFF's is float32
  tff_model: str = 'dense'           # TFF's Keras model: 'dense' or 'credit' (the credit job's)
  tolerance: float = 1e-5
  async_buffer: int = 0              # 0: no async study
  delay_distribution: str = 'lognormal'
  delay_spread: float = 1.0
  staleness_exponent: float = 0.5
  async_rounds: Optional[int] = None  # synchronous rounds of the async study; None: `rounds`
  target_loss: Optional[float] = None
  target_fraction: float = 0.95      # used when target_loss is None


def build_numpy(config: Config, bank_arrays):
  """NumPy side of a comparison.

  Returns:
    (clients in the mapping's order, a factory of fresh servers at the initial
    weights, the algorithm, the initial weights).
  """
  if not bank_arrays:
    raise ValueError('no clients to compare on')
  dtype = models.DTYPES[config.dtype]
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


def run(config: Config, *, bank_arrays, make_reference, output_dir: str,
        log: Callable[[str], None] = print) -> dict:
  """NumPy vs the reference in lockstep, then (if asked) sync vs async in NumPy.

  Args:
    bank_arrays: client name -> (x [n, d], y [n]).
    make_reference: `(config, bank_arrays, initial_weights) -> reference`.
    output_dir: Receives compare.csv, compare.png, summary.json and, with
      `async_buffer`, async.csv and async.png.

  Returns:
    The summary also written to summary.json; `within_tolerance` says whether
    the largest parameter difference met `config.tolerance`.
  """
  clients, make_server, algorithm, initial = build_numpy(config, bank_arrays)
  sizes = ', '.join(f'{c.name} {c.num_examples}' for c in clients)
  log(f'{config.algorithm} ({config.weighting} mean), {config.model} model, '
      f'{len(clients)} clients ({sizes}), {clients[0].x.shape[1]} features, '
      f'NumPy {config.dtype}')
  reference = make_reference(config, bank_arrays, initial)
  rows = side_by_side(server=make_server(), clients=clients, algorithm=algorithm,
                      reference=reference, rounds=config.rounds, log=log)
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
  files.write_text(os.path.join(output_dir, 'compare.csv'), rows_csv(rows))
  plot_losses(rows, os.path.join(output_dir, 'compare.png'),
              title=f'{config.algorithm}, {len(clients)} clients: NumPy vs TFF')

  if config.async_buffer:
    delays = asynchronous.Delays(distribution=config.delay_distribution,
                                 spread=config.delay_spread, seed=config.seed)
    study = asynchronous.compare(
        make_server=make_server, clients=clients, algorithm=algorithm, delays=delays,
        buffer_size=config.async_buffer, rounds=config.async_rounds or config.rounds,
        staleness_exponent=config.staleness_exponent, target_loss=config.target_loss,
        target_fraction=config.target_fraction)
    summary['async'] = study.summary()
    log(f'sync vs async (buffer {config.async_buffer} of {len(clients)} clients, '
        f'{config.delay_distribution} delays, spread {config.delay_spread:g}):')
    for line in format_async_summary(summary['async']):
      log('  ' + line)
    files.write_text(os.path.join(output_dir, 'async.csv'), async_csv(study))
    plot_async(study, os.path.join(output_dir, 'async.png'),
               title=f'{config.algorithm}: sync vs async (B={config.async_buffer})')
  files.write_json(os.path.join(output_dir, 'summary.json'), summary)
  log(f'wrote compare.csv, compare.png{", async.csv, async.png" if config.async_buffer else ""}'
      f', summary.json to {output_dir}')
  return summary

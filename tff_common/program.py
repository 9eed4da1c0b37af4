"""The training program both jobs run: rounds, sampling, checkpoints, releases.

Runs on the Python side (the "orchestrator"); each `process.next` call is one
federated round executed by TFF's runtime. What the program adds around it:

*   Client sampling that is a pure function of `(seed, round)`, so a resumed run
    picks the same clients as an uninterrupted one.
*   Checkpoints of the whole learning-process state through
    `tff.program.FileProgramStateManager`, every `rounds_per_checkpoint` rounds
    and after the last round. Rerunning the same command resumes from the
    newest readable checkpoint and says so; a checkpoint torn by a crash is
    skipped, never trusted.
*   Metrics of every round, released to `metrics.csv` (rows past the resumed
    round are replaced) and to TensorBoard under `output_dir/tensorboard`, and
    one progress line per round.
"""

import asyncio
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow_federated as tff

from tff_common import errors

MetricsFn = Callable[[Any, int], Mapping[str, float]]
ClientDataFn = Callable[[Sequence[str], int], list]


def sample_clients(client_ids: Sequence[str], *, clients_per_round: Optional[int],
                   seed: int, round_num: int) -> list[str]:
  """Clients of one round: all of them, or a seeded sample without replacement."""
  ids = sorted(client_ids)
  if clients_per_round is None or clients_per_round >= len(ids):
    return ids
  if clients_per_round <= 0:
    raise ValueError(f'clients_per_round must be positive, got {clients_per_round}')
  rng = np.random.default_rng([seed, round_num])
  chosen = rng.choice(len(ids), size=clients_per_round, replace=False)
  return [ids[i] for i in sorted(chosen)]


def check_run_settings(path: str, settings: Mapping[str, Any], *,
                       ignore: Sequence[str] = ()):
  """Refuses to continue a run directory under other settings.

  Compares `settings` (nested mappings allowed; keys compared as
  'section/key') with the JSON a previous run stored at `path`, if any; keys
  in `ignore` may differ (e.g. 'train/rounds': a rerun may train further).
  Resuming a checkpoint under other hyperparameters would silently mix two
  experiments. The caller stores `settings` once its inputs have been checked.

  Raises:
    errors.InputError: naming every setting that differs, old and new.
  """
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous = flatten_settings(json.load(f))
  wanted = flatten_settings(settings)
  changed = sorted(k for k in set(previous) | set(wanted)
                   if k not in ignore and previous.get(k) != wanted.get(k))
  if changed:
    raise errors.InputError(
        f'{path}: this output directory holds a run with other settings ('
        + '; '.join(f'{k}: {previous.get(k)!r} there, {wanted.get(k)!r} now' for k in changed)
        + '); use a new --output_dir or the same flags')


def flatten_settings(settings: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'train': {'rounds': 5}} -> {'train/rounds': 5}."""
  flat = {}
  for key, value in settings.items():
    if isinstance(value, Mapping):
      flat.update(flatten_settings(value, f'{prefix}{key}/'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def flatten_metrics(metrics: Any, prefix: str = '') -> dict[str, float]:
  """Nested TFF metrics -> {'client_work/train/loss': 0.5, ...} (scalars only)."""
  flat = {}
  if isinstance(metrics, Mapping):
    for key, value in metrics.items():
      flat.update(flatten_metrics(value, f'{prefix}{key}/'))
  else:
    array = np.asarray(metrics)
    if array.shape == () and array.dtype.kind in 'biuf':
      flat[prefix.rstrip('/')] = float(array)
  return flat


@dataclasses.dataclass
class TrainingResult:
  state: Any
  rounds_run: int          # rounds executed by this call (0 if already done)
  resumed_from: int        # round of the checkpoint we started from (0: fresh)
  history: list[dict[str, float]]


class Checkpoints:
  """`FileProgramStateManager` plus a fallback past torn checkpoints."""

  def __init__(self, root_dir: str, *, keep_total: int = 3):
    self._root_dir = root_dir
    self._manager = tff.program.FileProgramStateManager(
        root_dir=root_dir, prefix='round_', keep_total=keep_total,
        keep_first=False)

  def load_latest(self, structure) -> tuple[Any, int]:
    versions = asyncio.run(self._manager.get_versions()) or []
    for version in sorted(versions, reverse=True):
      try:
        return asyncio.run(self._manager.load(version, structure)), version
      except Exception as e:  # pylint: disable=broad-except
        # A crash while writing leaves a partial SavedModel; an older complete
        # one is the right place to restart from.
        # It is moved aside (kept for inspection) so the round can be saved again.
        aside = os.path.join(os.path.dirname(self._root_dir.rstrip('/')),
                             'checkpoints_unreadable', f'round_{version}')
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(os.path.join(self._root_dir, f'round_{version}'), aside)
        print(f'checkpoint of round {version} is unreadable ({type(e).__name__}); '
              f'moved to {aside}, trying an older one', flush=True)
    return None, 0

  def save(self, state, round_num: int):
    asyncio.run(self._manager.save(state, round_num))


def print_flushed(line: str):
  # Progress must show as it happens when stdout is a pipe or a file.
  print(line, flush=True)


def run_training(
    *,
    process: tff.learning.templates.LearningProcess,
    client_ids: Sequence[str],
    client_data_fn: ClientDataFn,
    total_rounds: int,
    output_dir: str,
    clients_per_round: Optional[int] = None,
    seed: int = 0,
    rounds_per_checkpoint: int = 1,
    evaluate_fn: Optional[MetricsFn] = None,
    progress_keys: Sequence[str] = ('loss',),
    log: Callable[[str], None] = print_flushed,
) -> TrainingResult:
  """Trains `process` for `total_rounds` rounds, resuming if checkpoints exist.

  Args:
    process: Any `tff.learning.templates.LearningProcess` (FedAvg, FedSGD,
      FedProx, Federated Reconstruction, ...).
    client_ids: All training clients.
    client_data_fn: `(sampled_ids, round_num) -> list of tf.data.Dataset`, in
      the order of `sampled_ids`. Receives the round so per-round local
      shuffling can be seeded and replayed after a resume.
    total_rounds: Rounds to reach in total, counting rounds of earlier runs.
    output_dir: Holds `checkpoints/`, `metrics.csv` and `tensorboard/`.
    clients_per_round: Clients sampled each round; None means all.
    seed: Seeds client sampling.
    rounds_per_checkpoint: Checkpoint period; the last round always saves.
    evaluate_fn: `(state, round_num) -> {name: value}` computed after each round
      (e.g. validation AUC); merged into that round's metrics.
    progress_keys: Metric names (matched on the last path component) shown on
      the progress line, besides the round and its seconds.
    log: Where progress lines go.

  Returns:
    A `TrainingResult` with the final state and this call's metric history.
  """
  if total_rounds < 0:
    raise ValueError(f'total_rounds must be >= 0, got {total_rounds}')
  if rounds_per_checkpoint <= 0:
    raise ValueError('rounds_per_checkpoint must be positive')
  os.makedirs(output_dir, exist_ok=True)
  checkpoints = Checkpoints(os.path.join(output_dir, 'checkpoints'))
  releases = tff.program.GroupingReleaseManager([
      tff.program.CSVFileReleaseManager(
          file_path=os.path.join(output_dir, 'metrics.csv'), key_fieldname='round'),
      tff.program.TensorBoardReleaseManager(
          summary_dir=os.path.join(output_dir, 'tensorboard')),
  ])

  initial_state = process.initialize()
  state, start_round = checkpoints.load_latest(initial_state)
  if state is None:
    state, start_round = initial_state, 0
  else:
    log(f'resuming from the checkpoint of round {start_round} in {output_dir}')
  if start_round >= total_rounds:
    log(f'already trained for {start_round} rounds (asked for {total_rounds}); '
        'nothing to do')

  history = []
  for round_num in range(start_round + 1, total_rounds + 1):
    started = time.perf_counter()
    sampled = sample_clients(client_ids, clients_per_round=clients_per_round,
                             seed=seed, round_num=round_num)
    output = process.next(state, client_data_fn(sampled, round_num))
    state = output.state
    metrics = flatten_metrics(output.metrics)
    if evaluate_fn is not None:
      metrics.update(evaluate_fn(state, round_num))
    metrics['clients'] = float(len(sampled))
    metrics['seconds'] = time.perf_counter() - started
    history.append(metrics)
    asyncio.run(releases.release(metrics, key=round_num))
    if round_num % rounds_per_checkpoint == 0 or round_num == total_rounds:
      checkpoints.save(state, round_num)
    log(_progress_line(round_num, total_rounds, metrics, progress_keys))
  return TrainingResult(state=state, rounds_run=len(history),
                        resumed_from=start_round, history=history)


def _progress_line(round_num: int, total_rounds: int,
                   metrics: Mapping[str, float], keys: Sequence[str]) -> str:
  parts = [f'round {round_num:>{len(str(total_rounds))}}/{total_rounds}']
  for key in keys:
    matches = [k for k in metrics if k == key or k.endswith('/' + key)]
    if matches:
      # The shortest path is the most direct one (e.g. 'val/auc' over a nested
      # per-client copy).
      name = min(matches, key=len)
      parts.append(f'{key} {metrics[name]:.4f}')
  parts.append(f'{metrics["seconds"]:.2f}s')
  return '  '.join(parts)

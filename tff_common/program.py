"""The training program both jobs run: rounds, sampling, checkpoints, releases.

Runs on the Python side (the "orchestrator"); each `process.next` call is one
federated round executed by TFF's runtime (installed once per process: see
`tff_common.runtime`). What the program adds around it:

*   `open_run`: the one settings check and the one seeding rule.
*   Client sampling that is a pure function of `(seed, round)`, so a resumed run
    picks the same clients as an uninterrupted one.
*   Checkpoints of the whole learning-process state through
    `tff.program.FileProgramStateManager`, every `rounds_per_checkpoint` rounds
    and after the last round. Rerunning the same command resumes from the
    newest readable checkpoint and says so; a checkpoint torn by a crash is
    skipped, never trusted.
*   Metrics of every round, released to `metrics.csv` (rows past the resumed
    round are replaced) and to TensorBoard, and one progress line per round.
*   With a `Selection` (a metric of `evaluate_fn`, e.g. validation AUC, and
    whether higher is better): the state of the best round so far, kept in
    memory and checkpointed beside the regular checkpoints, so a run returns
    (and a resumed run recovers) both the last and the best model.
*   Safety: the run directory is locked while training (`RunDir.lock`);
    temporary checkpoints left by a crash are removed at the start; a round
    whose update or new model is not finite is refused (`errors.TrainingFailed`)
    before anything of it is written; SIGINT / SIGTERM become
    `errors.Interrupted` naming the round to resume from.

Where each file goes is `tff_common.run_dir`'s business.
"""

import asyncio
import dataclasses
import os
import re
import shutil
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_common import communication
from tff_common import errors
from tff_common import program_config
from tff_common import progress
from tff_common import run_dir as run_dir_lib
from tff_common import seeding

MetricsFn = Callable[[Any, int], Mapping[str, float]]
ClientDataFn = Callable[[Sequence[str], int], list]


def open_run(run: run_dir_lib.RunDir, *, settings: Mapping[str, Any],
             config: program_config.ProgramConfig, defaults: Optional[Mapping[str, Any]] = None):
  """Starts (or continues) the run of `settings` in `run`, seeded by `config.seed`.

  Call it once the run's inputs are validated: `config` is checked, the
  directory is claimed for `settings` (a directory holding another
  experiment is refused, except for `ProgramConfig.MAY_CHANGE`; see
  `tff_common.program_config`), and every
  generator is seeded (`seeding.set_seed`), so a test and a binary with the
  same settings train identically. `defaults` (settings-shaped: the default
  of every setting) lets a directory written before a setting existed be
  resumed while that setting keeps its default (see `RunDir.claim`).
  """
  config.check()
  run.claim(settings, may_change=program_config.ProgramConfig.MAY_CHANGE, defaults=defaults)
  seeding.set_seed(config.seed)


def sample_clients(client_ids: Sequence[str], *, clients_per_round: Optional[int],
                   seed: int, round_num: int, sampling: str = 'fixed') -> list[str]:
  """Clients of one round: all of them, or a seeded sample.

  `sampling` 'fixed': `clients_per_round` of them uniformly without
  replacement; 'poisson': each independently with probability
  `clients_per_round / len(client_ids)` (possibly none). Either is a pure
  function of `(seed, round_num)`, so a resumed run draws the same clients.
  """
  ids = sorted(client_ids)
  if clients_per_round is None or clients_per_round >= len(ids):
    return ids
  if clients_per_round <= 0:
    raise ValueError(f'clients_per_round must be positive, got {clients_per_round}')
  rng = np.random.default_rng([seed, round_num])
  if sampling == 'poisson':
    chosen = np.flatnonzero(rng.random(len(ids)) < clients_per_round / len(ids))
  elif sampling == 'fixed':
    chosen = rng.choice(len(ids), size=clients_per_round, replace=False)
  else:
    raise ValueError(f'sampling must be fixed or poisson, got {sampling!r}')
  return [ids[i] for i in sorted(chosen)]


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


@dataclasses.dataclass(frozen=True)
class Selection:
  """Which round's state a run reports besides the last: the one whose
  `metric` (a name `evaluate_fn` returns, e.g. 'val/auc'; never a test
  metric) is best, 'max' or 'min' (`mode`); the earliest on a tie. Rounds
  without a finite value of it are never selected."""
  metric: str
  mode: str = 'max'

  def __post_init__(self):
    if self.mode not in ('max', 'min'):
      raise ValueError(f'Selection mode must be max or min, got {self.mode!r}')

  def better(self, value: float, than: float) -> bool:
    if not np.isfinite(value):
      return False
    if not np.isfinite(than):
      return True
    return value > than if self.mode == 'max' else value < than


@dataclasses.dataclass
class TrainingResult:
  state: Any
  rounds_run: int          # rounds executed by this call (0 if already done)
  resumed_from: int        # round of the checkpoint we started from (0: fresh)
  history: list[dict[str, float]]
  # With a `Selection`: the best round's state, its round (counting resumed
  # runs' rounds) and value; None / 0 / nan without one, or if no round had a
  # value (then the caller reports the last state).
  best_state: Any = None
  best_round: int = 0
  best_value: float = float('nan')


class Checkpoints:
  """`FileProgramStateManager` plus a fallback past torn checkpoints."""

  # A complete checkpoint (TFF writes `round_N_tempNNNN`, then renames it).
  _COMPLETE = re.compile(r'round_(\d+)$')
  _TEMPORARY = re.compile(r'round_\d+_temp')

  def __init__(self, run: run_dir_lib.RunDir, *, keep_total: int = 3,
               root_dir: Optional[str] = None):
    self._run = run
    self._root = root_dir or run.checkpoints
    self._manager = tff.program.FileProgramStateManager(
        root_dir=self._root, prefix='round_', keep_total=keep_total,
        keep_first=False)

  def remove_temporary(self, log: Callable[[str], None]):
    """Removes the temporary checkpoints a crash or a kill left mid-write.

    Only safe under the run directory's lock: another process's temporary
    checkpoint may be a save in progress.
    """
    stale = sorted(name for name in os.listdir(self._root)
                   if self._TEMPORARY.match(name))
    for name in stale:
      shutil.rmtree(os.path.join(self._root, name), ignore_errors=True)
    if stale:
      log(f'removed {len(stale)} temporary checkpoint{"s" if len(stale) > 1 else ""} left by '
          f'an interrupted run: {", ".join(stale)}')

  def newest(self) -> int:
    """The round of the newest complete checkpoint on disk (0: none): where a
    rerun resumes from."""
    return max(self.rounds(), default=0)

  def rounds(self) -> list[int]:
    """The rounds of the complete checkpoints on disk."""
    try:
      names = os.listdir(self._root)
    except OSError:
      return []
    return sorted(int(m.group(1)) for m in map(self._COMPLETE.match, names) if m)

  def load(self, structure, round_num: int) -> Any:
    """The checkpoint of `round_num`, or None if it is missing or unreadable."""
    try:
      return asyncio.run(self._manager.load(round_num, structure))
    except Exception:  # missing, or torn by a crash: the caller says what it does instead
      return None

  def remove_after(self, round_num: int):
    """Removes the checkpoints of rounds after `round_num` (a resume from it
    runs them again)."""
    for later in (r for r in self.rounds() if r > round_num):
      shutil.rmtree(os.path.join(self._root, f'round_{later}'), ignore_errors=True)

  def load_latest(self, structure, log: Callable[[str], None]) -> tuple[Any, int]:
    versions = asyncio.run(self._manager.get_versions()) or []
    for version in sorted(versions, reverse=True):
      try:
        return asyncio.run(self._manager.load(version, structure)), version
      except Exception as e:
        # A crash while writing leaves a partial SavedModel; an older complete
        # one is the right place to restart from. It is moved aside (kept for
        # inspection) so the round can be saved again.
        aside = os.path.join(self._run.unreadable_checkpoints, f'round_{version}')
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(os.path.join(self._root, f'round_{version}'), aside)
        log(f'checkpoint of round {version} is unreadable ({type(e).__name__}); '
            f'moved to {aside}, trying an older one')
    if versions:
      # Not silently: the user expected a resume.
      log(f'no readable checkpoint in {self._root}; training starts from round 1')
    return None, 0

  def save(self, state, round_num: int):
    asyncio.run(self._manager.save(state, round_num))


def run_training(
    *,
    process: tff.learning.templates.LearningProcess,
    client_ids: Sequence[str],
    client_data_fn: ClientDataFn,
    run: run_dir_lib.RunDir,
    config: program_config.ProgramConfig,
    evaluate_fn: Optional[MetricsFn] = None,
    progress_keys: Sequence[str] = ('loss',),
    wire: Optional[communication.Wire] = None,
    selection: Optional[Selection] = None,
    log: Callable[[str], None] = progress.print_flushed,
) -> TrainingResult:
  """Trains `process` to `config.rounds` rounds in `run`, resuming if checkpoints exist.

  Args:
    process: Any `tff.learning.templates.LearningProcess` (FedAvg, FedSGD,
      FedProx, Federated Reconstruction, ...).
    client_ids: All training clients.
    client_data_fn: `(sampled_ids, round_num) -> list of tf.data.Dataset`, in
      the order of `sampled_ids`. Receives the round so per-round local
      shuffling can be seeded and replayed after a resume.
    run: Receives checkpoints, metrics.csv and TensorBoard events.
    config: Rounds, clients per round, checkpoint period; its seed seeds
      client sampling.
    evaluate_fn: `(state, round_num) -> {name: value}` computed after each round
      (e.g. validation AUC); merged into that round's metrics.
    progress_keys: Metric names (matched on the last path components) shown on
      the progress line, besides the round and its seconds.
    wire: The encoding of the process's messages; with it, each round's
      metrics hold the bytes it moved (`tff_common.communication`).
    selection: Which round is the best (a metric of `evaluate_fn`). The best
      round's state is checkpointed to `run.best_checkpoints` (before the
      regular checkpoint of the same round, so a regular checkpoint never
      outlives the best state it follows); a resume recomputes the best round
      from metrics.csv up to the resumed round and loads its state.
    log: Where progress lines go.

  Returns:
    A `TrainingResult` with the final state and this call's metric history,
    and, with `selection`, the best round and its state.

  Raises:
    errors.InputError: another process holds `run` (see `RunDir.lock`, which
      this takes, reentrantly, for the whole call), or it cannot be written.
    errors.TrainingFailed: a round's update or new model weights were not
      finite; nothing of that round is written (earlier checkpoints stay).
    errors.Interrupted: SIGINT (exit code 130) or SIGTERM (143) during the
      rounds; its message names the round and the round a rerun resumes from.
  """
  config.check()
  with run.lock():
    return _run_training(process=process, client_ids=client_ids,
                         client_data_fn=client_data_fn, run=run, config=config,
                         evaluate_fn=evaluate_fn, progress_keys=progress_keys, wire=wire,
                         selection=selection, log=log)


class _Best:
  """The best round so far under a `Selection`, and its checkpoints.

  Its state is saved when the regular checkpoint of a round is (first), so the
  best of the rounds up to any regular checkpoint is on disk; two versions are
  kept, so a crash between the two saves leaves the one a resume needs.
  """

  def __init__(self, run: run_dir_lib.RunDir, selection: Selection):
    self.selection = selection
    self.state, self.round, self.value = None, 0, float('nan')
    self._run = run
    self._saved_round = 0
    self._checkpoints = Checkpoints(run, keep_total=2, root_dir=run.best_checkpoints)

  def resume(self, structure, start_round: int, log: Callable[[str], None]):
    """The best of rounds 1..start_round, from metrics.csv and its checkpoint."""
    os.makedirs(self._run.best_checkpoints, exist_ok=True)
    self._checkpoints.remove_temporary(log)
    # Those rounds run again (identically: sampling and shuffles are seeded).
    self._checkpoints.remove_after(start_round)
    if start_round == 0:
      return
    best_round, value = self._run.best(self.selection.metric, mode=self.selection.mode,
                                       up_to=start_round)
    if best_round == 0:
      return
    state = self._checkpoints.load(structure, best_round)
    if state is None:
      # Only a crash between checkpoints can lose it; said, never hidden.
      log(f'the checkpoint of the best round so far ({best_round}, '
          f'{self.selection.metric} {value:.4f}) is missing or unreadable; the best is '
          f'chosen among rounds {start_round + 1} and later')
      return
    self.state, self.round, self.value = state, best_round, value
    self._saved_round = best_round
    log(f'best round so far: {best_round} ({self.selection.metric} {value:.4f})')

  def observe(self, state, round_num: int, metrics: Mapping[str, float]):
    value = metrics.get(self.selection.metric, float('nan'))
    if self.selection.better(value, self.value):
      self.state, self.round, self.value = state, round_num, value

  def save(self):
    if self.round and self.round != self._saved_round:
      self._checkpoints.save(self.state, self.round)
      self._saved_round = self.round


def _run_training(*, process, client_ids, client_data_fn, run, config, evaluate_fn,
                  progress_keys, wire, selection, log) -> TrainingResult:
  checkpoints = Checkpoints(run)
  checkpoints.remove_temporary(log)
  releases = tff.program.GroupingReleaseManager([
      tff.program.CSVFileReleaseManager(
          file_path=run.metrics_csv, key_fieldname=run_dir_lib.ROUND),
      tff.program.TensorBoardReleaseManager(summary_dir=run.tensorboard),
  ])

  initial_state = process.initialize()
  state, start_round = checkpoints.load_latest(initial_state, log)
  if state is None:
    state, start_round = initial_state, 0
  else:
    log(f'resuming from the checkpoint of round {start_round} in {run.path}')
  best = None
  if selection is not None:
    best = _Best(run, selection)
    best.resume(initial_state, start_round, log)
  total_rounds = config.rounds
  if start_round >= total_rounds:
    log(f'already trained for {start_round} rounds (asked for {total_rounds}); '
        'nothing to do')

  # Sorted once per run: `sample_clients` sorts again every round, which is
  # linear on a sorted list; a lazy population's ids (`tff_rec.synthetic`) are
  # materialized here once instead of every round (48 ms a round at 100k users).
  client_ids = sorted(client_ids)
  history = []
  round_num = start_round + 1
  try:
    for round_num in range(start_round + 1, total_rounds + 1):
      started = time.perf_counter()
      sampled = sample_clients(client_ids, clients_per_round=config.clients_per_round,
                               seed=config.seed, round_num=round_num,
                               sampling=config.client_sampling)
      if sampled:
        output = process.next(state, client_data_fn(sampled, round_num))
        state = output.state
        metrics = flatten_metrics(output.metrics)
      else:
        # Poisson sampling drew nobody: the round passes with the model
        # unchanged (TFF cannot run a round of zero clients). It still
        # counts, as the accounting assumes.
        log(f'round {round_num}: no client was sampled; the model is unchanged')
        metrics = {}
      # Read once a round: the finiteness check and the byte count both need them.
      weights = process.get_model_weights(state) if hasattr(process, 'get_model_weights') else None
      _check_finite(weights, metrics, round_num)
      if evaluate_fn is not None:
        metrics.update(evaluate_fn(state, round_num))
      metrics['clients'] = float(len(sampled))
      if wire is not None:
        metrics.update(wire.round_metrics(weights, len(sampled)))
      metrics[run_dir_lib.SECONDS] = time.perf_counter() - started
      history.append(metrics)
      asyncio.run(releases.release(metrics, key=round_num))
      if best is not None:
        best.observe(state, round_num, metrics)
      if round_num % config.rounds_per_checkpoint == 0 or round_num == total_rounds:
        if best is not None:
          best.save()
        checkpoints.save(state, round_num)
      log(_progress_line(round_num, total_rounds, metrics, progress_keys))
  except (KeyboardInterrupt, errors.Interrupted) as e:
    # SIGINT is KeyboardInterrupt; SIGTERM is errors.Interrupted (see
    # tff_common.runtime). Either way the user's question is "what now?": the
    # answer is on disk (a save cut short leaves only a temporary directory,
    # removed at the next start).
    code = e.exit_code if isinstance(e, errors.Interrupted) else 130
    newest = checkpoints.newest()
    where = f'after round {newest}' if newest >= round_num else f'at round {round_num}'
    raise errors.Interrupted(f'interrupted {where}; rerun the same command to resume from '
                             f'round {newest + 1}', code) from None
  result = TrainingResult(state=state, rounds_run=len(history),
                          resumed_from=start_round, history=history)
  if best is not None and best.round:
    result.best_state, result.best_round, result.best_value = best.state, best.round, best.value
  return result


_NON_FINITE_UPDATE = 'update_non_finite'


def _check_finite(model_weights, metrics: Mapping[str, float], round_num: int):
  """Refuses a round whose result is not a model.

  TFF's FedAvg replaces a non-finite client update by zeros and reports
  `update_non_finite`, so the run would otherwise go on (exit 0) and save an
  unchanged or all-zero model; diverged weights would be saved as NaNs.
  """
  if any(k.rsplit('/', 1)[-1] == _NON_FINITE_UPDATE and v > 0 for k, v in metrics.items()):
    raise errors.TrainingFailed(
        f"round {round_num}: the clients' update was not finite (an overflow in the "
        'data, or training diverged); lower the learning rates or check the data')
  if model_weights is None:
    return
  for leaf in tf.nest.flatten(model_weights):
    array = np.asarray(leaf)
    if array.dtype.kind in 'fc' and not np.all(np.isfinite(array)):
      raise errors.TrainingFailed(
          f'round {round_num}: the new model weights are not finite (training '
          'diverged, or an overflow in the data); lower the learning rates or check the data')


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
  parts.append(f'{metrics[run_dir_lib.SECONDS]:.2f}s')
  return '  '.join(parts)

"""A run directory: the one module that knows its file names and layout.

Both jobs write a training run the same way:

    DIR/.lock                    held (flock) by the process training or evaluating
    DIR/config.json              the run's settings; a rerun must match them
    DIR/checkpoints/round_N/     learning-process state (tff.program), resume point
    DIR/checkpoints_unreadable/  checkpoints torn by a crash, moved aside
    DIR/checkpoints_best/round_N/  the state of the best round so far (with a
                                 selection rule: `tff_common.program.Selection`)
    DIR/metrics.csv              one row per round, TFF's metric names flattened
    DIR/tensorboard/             the same metrics for TensorBoard
    DIR/model.npz                the released weights by name, plus metadata
                                 (with a selection rule: the reported round's;
                                 `selected_round` in its metadata)
    DIR/model_last.npz, model_best.npz  the other round's model: the last
                                 round's when the best is reported, and back
    DIR/report.md, summary.json, <name>.png   evaluation outputs

tff_credit adds DIR/schema.json (the feature encoding the model was trained
with). tff_rec keeps one data split per directory and one training run per
algorithm: DIR/config.json holds the data settings and DIR/<algorithm>/ is a
run directory as above (`RunDir.child`).

Files of directories written before this layout (data.json,
train_config.json, model_weights.npz) are still read.
"""

import contextlib
import csv
import fcntl
import json
import os
import threading
import zipfile
import zlib
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Optional

import numpy as np

from tff_common import errors
from tff_common import files

LOCK = '.lock'
CONFIG = 'config.json'
SCHEMA = 'schema.json'
MODEL = 'model.npz'
# The model not reported, kept beside model.npz (same format).
MODEL_LAST = 'model_last.npz'
MODEL_BEST = 'model_best.npz'
CHECKPOINTS = 'checkpoints'
BEST_CHECKPOINTS = 'checkpoints_best'
UNREADABLE_CHECKPOINTS = 'checkpoints_unreadable'
METRICS = 'metrics.csv'
TENSORBOARD = 'tensorboard'
REPORT = 'report.md'
SUMMARY = 'summary.json'
_LEGACY = {CONFIG: ('data.json', 'train_config.json'), MODEL: ('model_weights.npz',)}
_METADATA = '__metadata__'
# The settings key of a fingerprint of the data (e.g. 'data/sha256').
FINGERPRINT = 'sha256'

# Column names TFF's learning processes give their metrics (flattened by
# `tff_common.program.flatten_metrics`); only this module reads them back.
ROUND = 'round'
SECONDS = 'seconds'
TRAINING_LOSS = 'client_work/train/loss'


class RunDir:
  """Paths and typed readers/writers of one run directory."""

  def __init__(self, path: str):
    self.path = path

  def __repr__(self):
    return f'RunDir({self.path!r})'

  def child(self, name: str) -> 'RunDir':
    """A run directory nested in this one (tff_rec: one per algorithm)."""
    return RunDir(os.path.join(self.path, name))

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  def _existing(self, name: str) -> str:
    """The path of `name`, or of the older name it had, if only that exists."""
    path = self.file(name)
    if not os.path.exists(path):
      for legacy in _LEGACY.get(name, ()):
        if os.path.exists(self.file(legacy)):
          return self.file(legacy)
    return path

  def exists(self, name: str) -> bool:
    return os.path.exists(self._existing(name))

  def makedirs(self):
    if os.path.exists(self.path) and not os.path.isdir(self.path):
      raise errors.InputError(f'{self.path}: exists and is not a directory; '
                              'give a directory for --output_dir')
    try:
      os.makedirs(self.path, exist_ok=True)
    except OSError as e:
      raise errors.InputError(f'{self.path}: cannot create the output directory '
                              f'({e.strerror})') from None

  # The lock.

  @contextlib.contextmanager
  def lock(self, *, create: bool = True):
    """Holds this directory for this process: `with run.lock(): train...`.

    Two processes writing one directory would interleave checkpoints and
    metrics rows (the loser crashing half-way), so a process that trains or
    evaluates holds an advisory lock (`fcntl.flock` on DIR/.lock, released by
    the kernel even if the process is killed). A second process is refused at
    once, before it touches anything. Reentrant within a process: a job may
    hold a directory and then train in it (or in a child run directory).

    Args:
      create: Create the directory if it is missing (training). If False
        (evaluating), a missing directory is not locked: there is nothing in it
        to protect, and its readers report what is missing.

    Raises:
      errors.InputError: another process holds the directory (naming its
        pid), or the directory or its lock file cannot be created.
    """
    key = os.path.realpath(self.path)
    with _held_guard:
      if key in _held:
        _held[key][1] += 1
      elif create or os.path.isdir(self.path):
        _held[key] = [self._acquire(), 1]
      else:
        key = None
    try:
      yield self
    finally:
      if key is not None:
        with _held_guard:
          _held[key][1] -= 1
          if _held[key][1] == 0:
            fd = _held.pop(key)[0]
            _release(fd)

  def _acquire(self) -> int:
    self.makedirs()
    path = self.file(LOCK)
    try:
      # O_CLOEXEC: the TFF worker and other children must not inherit (and
      # keep holding) the lock.
      fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
      raise errors.InputError(f'{path}: cannot create the lock file of the output '
                              f'directory ({e.strerror})') from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = _read_pid(fd)
      os.close(fd)
      if isinstance(e, BlockingIOError):
        raise errors.InputError(
            f'{self.path} is in use by another process (pid {holder or "unknown"}) '
            'training or evaluating in it; wait for it to finish, or use another '
            '--output_dir') from None
      raise errors.InputError(f'{path}: cannot lock the output directory '
                              f'({e.strerror})') from None
    try:
      # The holder's pid, for the message a second process prints.
      os.ftruncate(fd, 0)
      os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    except OSError:
      pass  # the lock holds without it
    return fd

  @property
  def checkpoints(self) -> str:
    return self.file(CHECKPOINTS)

  @property
  def best_checkpoints(self) -> str:
    return self.file(BEST_CHECKPOINTS)

  @property
  def unreadable_checkpoints(self) -> str:
    return self.file(UNREADABLE_CHECKPOINTS)

  @property
  def metrics_csv(self) -> str:
    return self.file(METRICS)

  @property
  def tensorboard(self) -> str:
    return self.file(TENSORBOARD)

  # Settings.

  def read_json(self, name: str, *, missing_hint: str = '') -> Any:
    path = self._existing(name)
    try:
      return _load_json(path)
    except FileNotFoundError:
      raise errors.InputError(f'{path}: not found{"; " + missing_hint if missing_hint else ""}'
                              ) from None

  def write_json(self, name: str, value: Any):
    path = self.file(name)
    try:
      files.write_json(path, value)
    except OSError as e:
      raise errors.InputError(_cannot_write(path, e)) from None

  def write_text(self, name: str, text: str):
    """Writes a report file atomically; an OS refusal is one line naming it."""
    path = self.file(name)
    try:
      files.write_text(path, text)
    except OSError as e:
      raise errors.InputError(_cannot_write(path, e)) from None

  def save_figure(self, name: str, figure, **kwargs):
    """Saves a matplotlib figure atomically; an OS refusal is one line naming it."""
    path = self.file(name)
    try:
      files.save_figure(figure, path, **kwargs)
    except OSError as e:
      raise errors.InputError(_cannot_write(path, e)) from None

  def claim(self, settings: Mapping[str, Any], *, may_change: Sequence[str] = (),
            defaults: Optional[Mapping[str, Any]] = None):
    """Makes this directory the run of `settings`, or refuses.

    A directory without settings gets them; one whose stored settings differ
    from `settings` (nested mappings compared as 'section/key'; keys whose last
    part is in `may_change` excepted, e.g. 'rounds': a rerun may train further,
    and the stored value is updated) is refused, because resuming its checkpoint under other settings would
    silently mix two experiments. A changed data fingerprint (a key whose last
    part is `FINGERPRINT`) is said plainly: the data's content changed; a
    directory that stored none predates fingerprints and cannot be checked.
    A setting the stored ones lack (the directory predates it) is accepted
    when `settings` gives it its value in `defaults` (settings-shaped), i.e.
    the run goes on as it was trained.

    Raises:
      errors.InputError: naming every setting that differs, old and new (also
        when config.json is unreadable or cannot be written).
    """
    path = self._existing(CONFIG)
    if os.path.exists(path):
      previous = flatten(_load_json(path))
      wanted = flatten(settings)
      predated = flatten(defaults or {})
      changed = sorted(k for k in set(previous) | set(wanted)
                       if _last(k) not in may_change
                       and previous.get(k) != wanted.get(k)
                       and not (k not in previous and k in predated
                                and wanted.get(k) == predated[k]))
      if changed:
        raise errors.InputError(f'{path}: ' + _refusal(changed, previous, wanted))
      if previous == wanted:
        return
      # Only settings that may change did (e.g. more rounds): the stored ones
      # describe the run as it now continues.
    self.makedirs()
    self.write_json(CONFIG, settings)

  # The released model.

  def save_model(self, arrays: Mapping[str, np.ndarray], *, file_name: str = MODEL, **metadata):
    """Writes the named arrays and JSON metadata to model.npz (or `file_name`,
    e.g. `MODEL_LAST`), atomically."""
    self.makedirs()
    path = self.file(file_name)
    try:
      with files.atomic_path(path) as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()},
                 **{_METADATA: np.array(json.dumps(metadata))})
    except OSError as e:
      raise errors.InputError(_cannot_write(path, e)) from None

  def load_model(self, *, missing_hint: str = '',
                 file_name: str = MODEL) -> tuple[dict[str, np.ndarray], dict]:
    """(named arrays in stored order, metadata) of model.npz (or `file_name`).

    Raises:
      errors.InputError: the file is missing (with `missing_hint`) or
        unreadable (truncated, not an archive, no metadata), naming it.
    """
    path = self._existing(file_name)
    try:
      with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files if k not in (_METADATA, 'metadata')}
        meta_key = next((k for k in (_METADATA, 'metadata') if k in archive.files), None)
        if meta_key is None and path == self.file(file_name):
          # Every model.npz this code writes has it (only the older
          # model_weights.npz had none): without it the file is not ours.
          raise ValueError('no metadata')
        metadata = json.loads(str(archive[meta_key])) if meta_key else {}
        if not isinstance(metadata, dict):
          raise ValueError('metadata is not a mapping')
    except FileNotFoundError:
      raise errors.InputError(f'{path}: not found{"; " + missing_hint if missing_hint else ""}'
                              ) from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zlib.error) as e:
      # A write torn by a full disk or a copy cut short; np.load's own message
      # names no file, so the error does.
      raise errors.InputError(f'{path}: unreadable ({type(e).__name__}: {e}); train again'
                              ) from None
    return arrays, metadata

  # Metrics of the rounds, as written by tff_common.program.

  def metrics(self) -> list[dict[str, float]]:
    """One mapping per round in metrics.csv (empty cells left out)."""
    if not os.path.isfile(self.metrics_csv):
      return []
    with open(self.metrics_csv, encoding='utf-8') as f:
      return [{k: float(v) for k, v in row.items() if v not in ('', None)}
              for row in csv.DictReader(f)]

  def curve(self, name: str) -> tuple[list[int], list[float]]:
    """(rounds, values) of one metric; `name` may be `TRAINING_LOSS`."""
    rows = [r for r in self.metrics() if name in r]
    return [int(r[ROUND]) for r in rows], [r[name] for r in rows]

  def training_loss(self) -> tuple[list[int], list[float]]:
    """The clients' mean training loss per round, as TFF reports it."""
    return self.curve(TRAINING_LOSS)

  def best(self, name: str, *, mode: str, up_to: int) -> tuple[int, float]:
    """(round, value) of the best finite value of metric `name` over rounds
    1..up_to ('max' or 'min'; the earliest round on a tie), or (0, nan) if
    none has one."""
    best_round, best_value = 0, float('nan')
    for row in sorted(self.metrics(), key=lambda r: r[ROUND]):
      value, round_num = row.get(name), int(row[ROUND])
      if value is None or not np.isfinite(value) or round_num > up_to:
        continue
      if best_round == 0 or (value > best_value if mode == 'max' else value < best_value):
        best_round, best_value = round_num, value
    return best_round, best_value

  def total(self, name: str, rounds: int) -> float:
    """The sum of metric `name` over rounds 1..rounds (e.g. the bytes a run moved)."""
    return sum(r[name] for r in self.metrics() if name in r and int(r[ROUND]) <= rounds)

  def seconds_in_rounds(self, rounds: int) -> float:
    """Time spent in rounds 1..rounds, over every run that contributed (resumes too)."""
    return self.total(SECONDS, rounds)


def flatten(settings: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'train': {'rounds': 5}} -> {'train/rounds': 5}."""
  flat = {}
  for key, value in settings.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}/'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _last(key: str) -> str:
  return key.rsplit('/', 1)[-1]


def _refusal(changed: Sequence[str], previous: Mapping[str, Any],
             wanted: Mapping[str, Any]) -> str:
  """Why `claim` refuses: the changed settings, old and new, and a changed
  data fingerprint said in words (a hash alone would not tell the user that
  the data file changed)."""
  reasons, hint = [], 'use a new --output_dir or the same flags'
  settings = [k for k in changed if _last(k) != FINGERPRINT]
  if settings:
    reasons.append('this output directory holds a run with other settings ('
                   + '; '.join(f'{k}: {previous.get(k)!r} there, {wanted.get(k)!r} now'
                               for k in settings) + ')')
  for key in (k for k in changed if _last(k) == FINGERPRINT):
    if not previous.get(key):
      reasons.append(f"this directory's run predates data fingerprints (no {key} stored), "
                     'so the data it was trained on cannot be checked')
      hint = 'use a new --output_dir'
    elif not wanted.get(key):
      reasons.append(f'{key}: {previous[key]!r} there, none now')
    else:
      reasons.append(f"the data's content changed since this directory's run started "
                     f'({key}: {str(previous[key])[:12]}... there, '
                     f'{str(wanted[key])[:12]}... now)')
      if hint != 'use a new --output_dir':
        hint = 'use a new --output_dir, or the data and flags this run was started with'
  return '; '.join(reasons) + '; ' + hint


def _load_json(path: str) -> Any:
  """json.load of `path`; an unreadable file (a torn write, a directory, not
  UTF-8) is an InputError naming it. FileNotFoundError is the caller's."""
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    raise
  except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    reason = e.strerror if isinstance(e, OSError) else f'{type(e).__name__}: {e}'
    raise errors.InputError(f'{path}: unreadable ({reason}); restore it or use a new '
                            '--output_dir') from None


def _cannot_write(path: str, e: OSError) -> str:
  return f'{path}: cannot write ({e.strerror or e})'


# Locks this process holds: real path of the directory -> [fd, depth].
_held: dict[str, list] = {}
_held_guard = threading.Lock()


def _read_pid(fd: int) -> str:
  try:
    text = os.pread(fd, 32, 0).decode('ascii', 'replace').strip()
  except OSError:
    return ''
  return text if text.isdigit() else ''


def _release(fd: int):
  try:
    os.ftruncate(fd, 0)
  except OSError:
    pass
  os.close(fd)  # closing the last descriptor releases the flock

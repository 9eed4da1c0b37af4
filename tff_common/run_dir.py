"""A run directory: the one module that knows its file names and layout.

Both jobs write a training run the same way:

    DIR/config.json              the run's settings; a rerun must match them
    DIR/checkpoints/round_N/     learning-process state (tff.program), resume point
    DIR/checkpoints_unreadable/  checkpoints torn by a crash, moved aside
    DIR/metrics.csv              one row per round, TFF's metric names flattened
    DIR/tensorboard/             the same metrics for TensorBoard
    DIR/model.npz                the released weights by name, plus metadata
    DIR/report.md, summary.json, <name>.png   evaluation outputs

tff_credit adds DIR/schema.json (the feature encoding the model was trained
with). tff_rec keeps one data split per directory and one training run per
algorithm: DIR/config.json holds the data settings and DIR/<algorithm>/ is a
run directory as above (`RunDir.child`).

Files of directories written before this layout (data.json,
train_config.json, model_weights.npz) are still read.
"""

import csv
import json
import os
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from tff_common import errors
from tff_common import files

CONFIG = 'config.json'
SCHEMA = 'schema.json'
MODEL = 'model.npz'
CHECKPOINTS = 'checkpoints'
UNREADABLE_CHECKPOINTS = 'checkpoints_unreadable'
METRICS = 'metrics.csv'
TENSORBOARD = 'tensorboard'
REPORT = 'report.md'
SUMMARY = 'summary.json'
_LEGACY = {CONFIG: ('data.json', 'train_config.json'), MODEL: ('model_weights.npz',)}
_METADATA = '__metadata__'

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
    try:
      os.makedirs(self.path, exist_ok=True)
    except OSError as e:
      raise errors.InputError(f'{self.path}: cannot create the output directory '
                              f'({e.strerror})') from None

  @property
  def checkpoints(self) -> str:
    return self.file(CHECKPOINTS)

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
      with open(path, encoding='utf-8') as f:
        return json.load(f)
    except FileNotFoundError:
      raise errors.InputError(f'{path}: not found{"; " + missing_hint if missing_hint else ""}'
                              ) from None

  def write_json(self, name: str, value: Any):
    files.write_json(self.file(name), value)

  def claim(self, settings: Mapping[str, Any], *, may_change: Sequence[str] = ()):
    """Makes this directory the run of `settings`, or refuses.

    A directory without settings gets them; one whose stored settings differ
    from `settings` (nested mappings compared as 'section/key'; keys whose last
    part is in `may_change` excepted, e.g. 'rounds': a rerun may train further)
    is refused, because resuming its checkpoint under other settings would
    silently mix two experiments.

    Raises:
      errors.InputError: naming every setting that differs, old and new.
    """
    path = self._existing(CONFIG)
    if os.path.exists(path):
      with open(path, encoding='utf-8') as f:
        previous = flatten(json.load(f))
      wanted = flatten(settings)
      changed = sorted(k for k in set(previous) | set(wanted)
                       if k.rsplit('/', 1)[-1] not in may_change
                       and previous.get(k) != wanted.get(k))
      if changed:
        raise errors.InputError(
            f'{path}: this output directory holds a run with other settings ('
            + '; '.join(f'{k}: {previous.get(k)!r} there, {wanted.get(k)!r} now'
                        for k in changed)
            + '); use a new --output_dir or the same flags')
      return
    self.makedirs()
    self.write_json(CONFIG, settings)

  # The released model.

  def save_model(self, arrays: Mapping[str, np.ndarray], **metadata):
    """Writes the named arrays and JSON metadata to model.npz, atomically."""
    self.makedirs()
    with files.atomic_path(self.file(MODEL)) as tmp:
      np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()},
               **{_METADATA: np.array(json.dumps(metadata))})

  def load_model(self, *, missing_hint: str = '') -> tuple[dict[str, np.ndarray], dict]:
    """(named arrays in stored order, metadata) of model.npz."""
    path = self._existing(MODEL)
    try:
      with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files if k not in (_METADATA, 'metadata')}
        meta_key = next((k for k in (_METADATA, 'metadata') if k in archive.files), None)
        metadata = json.loads(str(archive[meta_key])) if meta_key else {}
    except FileNotFoundError:
      raise errors.InputError(f'{path}: not found{"; " + missing_hint if missing_hint else ""}'
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

  def seconds_in_rounds(self, rounds: int) -> float:
    """Time spent in rounds 1..rounds, over every run that contributed (resumes too)."""
    return sum(r[SECONDS] for r in self.metrics() if int(r[ROUND]) <= rounds)


def flatten(settings: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'train': {'rounds': 5}} -> {'train/rounds': 5}."""
  flat = {}
  for key, value in settings.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}/'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat

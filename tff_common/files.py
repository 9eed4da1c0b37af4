"""Writes that never leave a half-written file: temporary file, then rename."""

import contextlib
import json
import os
import tempfile
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path beside `path`; renamed onto it only on success."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]  # keeps writers that dispatch on suffix happy
  fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix=suffix,
                             dir=directory)
  os.close(fd)
  # mkstemp creates 0600; a result file should get the usual mode (umask).
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str):
  with atomic_path(path) as tmp:
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text)


def write_json(path: str, value: Any):
  write_text(path, json.dumps(value, indent=2, sort_keys=False, default=_to_builtin) + '\n')


def save_figure(figure, path: str, **kwargs):
  with atomic_path(path) as tmp:
    figure.savefig(tmp, **kwargs)


def _to_builtin(value):
  import numpy as np
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f'not JSON serializable: {type(value).__name__}')

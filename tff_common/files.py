"""Writes that never leave a half-written file: temporary file, then rename."""

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Any

from tff_common import errors


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


def fingerprint(*parts) -> str:
  """SHA-256 of arrays and strings (dtype, shape and content of each), as hex.

  What a run stores about its data, so a rerun or an evaluation on changed data
  is refused instead of silently mixing two data sets.
  """
  import numpy as np
  digest = hashlib.sha256()
  for part in parts:
    array = np.asarray(part)
    if array.dtype == object or array.dtype.kind in 'US':
      data = '\x1f'.join(map(str, array.ravel())).encode('utf-8', 'surrogatepass')
    else:
      data = np.ascontiguousarray(array).tobytes()
    digest.update(f'{array.dtype.kind}{array.shape}'.encode())
    digest.update(hashlib.sha256(data).digest())
  return digest.hexdigest()


def check_text_file(path: str, *, expected: str):
  """Raises `errors.InputError` for a file that is not UTF-8 text, by its first bytes.

  Without this, a UTF-16 file (Excel's "Unicode text"), a workbook or a
  compressed download fails later with a confusing message about its first
  field. `expected` says what the file should be, e.g. 'a CSV file'.
  """
  try:
    with open(path, 'rb') as f:
      head = f.read(4096)
  except OSError as e:
    raise errors.InputError(f'{path}: cannot read ({e.strerror})') from None
  if head.startswith((b'\xff\xfe', b'\xfe\xff')):  # UTF-16 (and UTF-32 LE) byte-order marks
    raise errors.InputError(f'{path}: the file is UTF-16 encoded; expected {expected} in UTF-8 '
                            '(re-save it as UTF-8)')
  if head.startswith(b'PK\x03\x04'):
    raise errors.InputError(f'{path}: the file is a ZIP archive (an Excel workbook, a zipped '
                            f'download?); expected {expected} (export or unzip it)')
  if head.startswith(b'\x1f\x8b'):
    raise errors.InputError(f'{path}: the file is gzip-compressed; expected {expected} as plain '
                            'text (decompress it first)')
  if b'\x00' in head:
    raise errors.InputError(f'{path}: the file holds NUL bytes, so it is not text (UTF-16 or '
                            f'binary?); expected {expected}')


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

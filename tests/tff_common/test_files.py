"""Atomic writes: all or nothing."""

import os

import pytest

from tff_common import files


def test_write_replaces_whole_file_with_normal_mode(tmp_path):
  path = tmp_path / 'out' / 'summary.json'
  files.write_json(str(path), {'auc': 0.8})
  files.write_json(str(path), {'auc': 0.9})
  assert path.read_text() == '{\n  "auc": 0.9\n}\n'
  assert os.stat(path).st_mode & 0o044  # readable by others, like any output
  assert [p.name for p in path.parent.iterdir()] == ['summary.json']


def test_failure_leaves_old_file_and_no_temporary(tmp_path):
  path = tmp_path / 'report.md'
  files.write_text(str(path), 'old')
  with pytest.raises(RuntimeError):
    with files.atomic_path(str(path)) as tmp:
      with open(tmp, 'w') as f:
        f.write('half')
      raise RuntimeError('crash while writing')
  assert path.read_text() == 'old'
  assert [p.name for p in tmp_path.iterdir()] == ['report.md']

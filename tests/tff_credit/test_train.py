"""The tff_credit.train binary: bad input is one line and nothing written; the
binary trains exactly what the library does with the same settings."""

import subprocess
import sys

import numpy as np

from tests.tff_credit.helpers import CSV_FLAGS
from tests.tff_credit.helpers import train
from tests.tff_credit.helpers import write_loans_csv
from tff_common import run_dir
from tff_credit import model


def _train_binary(*args):
  return subprocess.run([sys.executable, '-m', 'tff_credit.train', *args],
                        capture_output=True, text=True, timeout=180)


def test_train_binary_bad_csv_exits_nonzero_and_writes_nothing(tmp_path):
  path = write_loans_csv(tmp_path / 'loans.csv', extra_lines=['600,12,41,north,unknown'])
  out = tmp_path / 'out'
  result = _train_binary(f'--data={path}', *CSV_FLAGS, f'--output_dir={out}', '--rounds=1')
  assert result.returncode == 2
  assert "line 602: column 'outcome' has label 'unknown'" in result.stderr
  assert 'Traceback' not in result.stderr
  assert not out.exists()


def test_binary_and_library_train_identically(tff_context, tmp_path):
  """The seeding rule (tff_common.seeding) is applied inside the library: a test
  in a process whose global seeds were moved by other tests gets the binary's weights."""
  del tff_context
  import tensorflow as tf
  tf.random.set_seed(12345)  # what an earlier test might have left behind
  path = write_loans_csv(tmp_path / 'loans.csv', rows=400)
  out = tmp_path / 'binary'
  result = _train_binary(f'--data={path}', *CSV_FLAGS, f'--output_dir={out}', '--rounds=3',
                         '--banks=3', '--partition=iid', '--seed=1', '--client_lr=0.2')
  assert result.returncode == 0, result.stderr[-2000:]
  train(path, tmp_path / 'library', 3)
  binary = model.load(run_dir.RunDir(str(out)))
  library = model.load(run_dir.RunDir(str(tmp_path / 'library')))
  for a, b in zip(binary, library, strict=True):
    np.testing.assert_array_equal(a, b)


def test_invalid_flags_are_one_line_and_leave_the_directory_usable(tmp_path):
  path = write_loans_csv(tmp_path / 'loans.csv', rows=300)
  out = tmp_path / 'out'
  for flag, message in (
      ('--client_lr=-0.5', '--client_lr=-0.5: expected a number > 0'),
      ('--client_lr=0', '--client_lr=0.0: expected a number > 0'),
      ('--clients_per_round=0', '--clients_per_round=0: expected an integer >= 1'),
      ('--rounds=-1', '--rounds=-1: expected an integer >= 1'),
      ('--test_fraction=1.5', '--test_fraction=1.5: expected a number in (0, 1)'),
  ):
    result = _train_binary(f'--data={path}', *CSV_FLAGS, f'--output_dir={out}', flag)
    assert result.returncode == 2, (flag, result.stderr[-2000:])
    assert result.stderr.strip().splitlines() == [f'error: {message}'], flag
    assert not out.exists(), flag
  # The corrected command is not refused: nothing was claimed.
  result = _train_binary(f'--data={path}', *CSV_FLAGS, f'--output_dir={out}', '--rounds=1')
  assert result.returncode == 0, result.stderr[-2000:]

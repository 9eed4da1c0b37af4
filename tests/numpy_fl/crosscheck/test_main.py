"""The binary, `python -m numpy_fl.crosscheck`, end to end."""

import json
import os
import subprocess
import sys

TOLERANCE = 1e-5


def _crosscheck(*args, timeout=240):
  return subprocess.run([sys.executable, '-m', 'numpy_fl.crosscheck', *args],
                        capture_output=True, text=True, timeout=timeout)


def test_crosscheck_binary_end_to_end_with_async(tmp_path):
  out = tmp_path / 'out'
  result = _crosscheck('--data=synthetic', '--banks=3', '--synthetic_features=3',
                       '--algorithm=fedavg', '--rounds=3', '--batch_size=8',
                       '--async_buffer=2', '--async_rounds=10', f'--output_dir={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'round 3/3' in result.stdout and 'TFF/NumPy' in result.stdout
  assert 'sync vs async' in result.stdout
  assert sorted(os.listdir(out)) == ['async.csv', 'async.png', 'compare.csv', 'compare.png',
                                     'summary.json']
  summary = json.loads((out / 'summary.json').read_text())
  assert summary['within_tolerance'] and summary['max_abs_diff'] <= TOLERANCE
  lines = (out / 'compare.csv').read_text().splitlines()
  assert lines[0] == ('round_num,numpy_loss,tff_loss,max_abs_diff,numpy_seconds,tff_seconds,'
                      'tff_reported_loss')
  assert len(lines) == 1 + 4  # round 0 and three rounds


def test_crosscheck_binary_bad_flag_is_one_line_and_writes_nothing(tmp_path):
  out = tmp_path / 'out'
  result = _crosscheck('--data=synthetic', '--banks=3', '--async_buffer=4', f'--output_dir={out}',
                       timeout=60)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      'error: --async_buffer=4: expected an integer in [0, --banks=3]']
  assert not out.exists()


def test_engines_disagreeing_beyond_the_tolerance_exit_3(tmp_path):
  # float32 TFF against float64 NumPy differ by ~1e-8 after a round: above 1e-12.
  out = tmp_path / 'out'
  result = _crosscheck('--data=synthetic', '--banks=2', '--synthetic_features=2', '--rounds=1',
                       '--numpy_dtype=float64', '--tolerance=1e-12', f'--output_dir={out}')
  assert result.returncode == 3, result.stderr[-3000:]
  assert 'EXCEEDED' in result.stdout
  assert not json.loads((out / 'summary.json').read_text())['within_tolerance']


def test_values_the_study_would_fail_on_are_refused_before_any_round(tmp_path):
  (tmp_path / 'file').write_text('')
  for args, message in (
      (['--async_buffer=2', '--async_rounds=-1', f'--output_dir={tmp_path / "a"}'],
       'error: --async_rounds=-1: expected an integer >= 1'),
      ([f'--output_dir={tmp_path / "file"}'], 'exists and is not a directory')):
    result = _crosscheck('--data=synthetic', '--banks=3', *args, timeout=60)
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
  assert not (tmp_path / 'a').exists()

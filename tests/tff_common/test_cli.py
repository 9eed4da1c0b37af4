"""tff_common.cli.run: the exit codes and the one line of tff_common.errors, in a
real process (`tiny_binary`: `cli.run` around `program.run_training`)."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests.tff_common import helpers

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _start(out, *flags, stdout=subprocess.PIPE):
  return subprocess.Popen(
      [sys.executable, '-m', 'tests.tff_common.tiny_binary', f'--output_dir={out}', *flags],
      cwd=ROOT, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE)


def _wait_for_line(stream, text: bytes, timeout: float = 120) -> bytes:
  """Lines of `stream` up to and including the first that contains `text`."""
  seen = b''
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    line = stream.readline()
    if not line:
      break
    seen += line
    if text in line:
      return seen
  raise AssertionError(f'no {text!r} in: {seen.decode()}')


def _worker_pid(out) -> int:
  return int(pathlib.Path(f'{out}.worker_pid').read_text())


def _assert_worker_gone(pid: int):
  deadline = time.monotonic() + 10
  while helpers.pid_alive(pid) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not helpers.pid_alive(pid)


@pytest.mark.parametrize('signum,code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_training_says_where_to_resume_in_one_line(tmp_path, signum, code):
  out = tmp_path / 'run'
  # Round 3's data is being built when the signal comes: rounds 1 and 2 are
  # checkpointed, so a rerun resumes from round 3.
  process = _start(out, '--rounds=5', '--pause_at_round=3')
  _wait_for_line(process.stderr, b'pausing')
  process.send_signal(signum)
  stdout, stderr = process.communicate(timeout=60)
  assert process.returncode == code, stderr.decode()
  assert stderr.decode().splitlines() == [
      'interrupted at round 3; rerun the same command to resume from round 3']
  assert b'round 2/5' in stdout and b'saved' not in stdout
  _assert_worker_gone(_worker_pid(out))
  assert sorted(os.listdir(out / 'checkpoints')) == ['round_1', 'round_2']


@pytest.mark.parametrize('signum,code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_outside_training_is_one_line_too(tmp_path, signum, code):
  out = tmp_path / 'run'
  process = _start(out, '--pause_while_loading')
  _wait_for_line(process.stderr, b'pausing')
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=60)
  assert process.returncode == code, stderr.decode()
  assert stderr.decode().splitlines() == ['interrupted']
  _assert_worker_gone(_worker_pid(out))


def test_a_closed_stdout_does_not_stop_training(tmp_path):
  out = tmp_path / 'run'
  # `train ... | head -1`: the reader takes one line and goes away.
  process = _start(out, '--rounds=4')
  first = process.stdout.readline()
  process.stdout.close()
  _, stderr = process.communicate(timeout=120)
  assert b'round 1/4' in first
  assert process.returncode == 0, stderr.decode()
  assert b'Error' not in stderr and b'Exception' not in stderr, stderr.decode()
  assert (out / 'model.npz').exists()
  assert [line.split(',')[0] for line in (out / 'metrics.csv').read_text().splitlines()[1:]] == [
      '1', '2', '3', '4']


def test_a_non_finite_round_is_an_input_error(tmp_path):
  out = tmp_path / 'run'
  process = _start(out, '--rounds=3', '--overflow_at_round=2')
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == 2
  assert stderr.decode().splitlines() == [
      "error: round 2: the clients' update was not finite (an overflow in the data, or "
      'training diverged); lower the learning rates or check the data']
  assert b'round 1/3' in stdout and b'round 2/3' not in stdout
  assert sorted(os.listdir(out / 'checkpoints')) == ['round_1']


@pytest.mark.parametrize('flag,message', [
    ('--rounds=abc', "error: flag --rounds=abc: invalid literal for int() with base 10: 'abc'; "
                     'see --help'),
    ('--no_such_flag', 'error: Unknown command line flag'),
])
def test_a_flag_that_does_not_parse_is_one_line_and_exit_2(tmp_path, flag, message):
  result = subprocess.run([sys.executable, '-m', 'tests.tff_common.tiny_binary',
                           f'--output_dir={tmp_path / "out"}', flag],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), result.stderr
  assert not (tmp_path / 'out').exists()

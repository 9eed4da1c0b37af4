"""The TFF worker never outlives the process that started it, nor holds its pipes."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.tff_common import helpers

_SCRIPT = textwrap.dedent('''
    import sys, time
    import numpy as np
    from tff_common import quiet
    tf, tff = quiet.import_tensorflow()
    from tff_common import runtime
    worker = runtime.install_execution_context()

    @tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
    def mean(x):
      return tff.federated_mean(x)

    result = mean([1.0, 2.0, 6.0])
    print(f'worker_pid={worker.pid} mean={result}', flush=True)
    mode = sys.argv[1]
    if mode == 'raise':
      raise RuntimeError('deliberate failure')
    if mode == 'wait':
      time.sleep(120)
''')


def _run(mode: str):
  """Starts the script with stdout on a pipe; returns (process, worker pid)."""
  process = subprocess.Popen([sys.executable, '-c', _SCRIPT, mode], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
  first = b''
  deadline = time.monotonic() + 120
  while b'worker_pid=' not in first and time.monotonic() < deadline:
    line = process.stdout.readline()
    if not line:
      break
    first += line
  text = first.decode()
  assert 'worker_pid=' in text, text
  assert 'mean=3.0' in text, text
  pid = int(text.split('worker_pid=')[1].split()[0])
  return process, pid


def _read_to_eof_quickly(process) -> bytes:
  """Reading the pipe to EOF must end within seconds of the process ending."""
  started = time.monotonic()
  rest = process.stdout.read()  # blocks while anyone (a worker) holds the pipe
  assert time.monotonic() - started < 30
  process.wait(timeout=10)
  return rest


@pytest.mark.parametrize('mode,expect_code', [('exit', 0), ('raise', 1)])
def test_worker_gone_after_exit_or_exception(mode, expect_code):
  process, worker_pid = _run(mode)
  rest = _read_to_eof_quickly(process)
  assert process.returncode == expect_code
  if mode == 'raise':
    assert b'deliberate failure' in rest
  assert not helpers.pid_alive(worker_pid)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_worker_gone_after_signal(signum):
  process, worker_pid = _run('wait')
  assert helpers.pid_alive(worker_pid)
  process.send_signal(signum)
  rest = _read_to_eof_quickly(process)
  assert process.returncode != 0
  if signum == signal.SIGTERM:
    # errors.Interrupted is a SystemExit: a library caller exits 143, quietly.
    assert process.returncode == 143 and b'Traceback' not in rest, rest.decode()
  deadline = time.monotonic() + 10
  while helpers.pid_alive(worker_pid) and time.monotonic() < deadline:
    time.sleep(0.1)  # after SIGKILL the kernel's parent-death signal does it
  assert not helpers.pid_alive(worker_pid)


def test_dead_worker_is_reported_with_its_log_and_clean_stop_removes_log():
  from tff_common import runtime
  worker = runtime.Worker(max_concurrent_computation_calls=-1, log_path=None)
  worker.start()
  os.kill(worker.pid, signal.SIGKILL)
  deadline = time.monotonic() + 10
  with pytest.raises(RuntimeError, match='worker_binary exited') as error:
    while time.monotonic() < deadline:
      worker.stub()
      time.sleep(0.05)
  assert worker.log_path in str(error.value)
  worker.stop()
  assert os.path.exists(worker.log_path)  # a crash keeps its evidence
  os.remove(worker.log_path)

  clean = runtime.Worker(max_concurrent_computation_calls=-1, log_path=None)
  clean.start()
  pid = clean.pid
  clean.stop()
  assert not helpers.pid_alive(pid) and not os.path.exists(clean.log_path)


def test_a_stopped_worker_stays_stopped():
  """After an interrupt TFF's event-loop thread may still ask for the stub while
  atexit stops the worker: it gets an error, not a new worker forked at exit."""
  from tff_common import runtime
  worker = runtime.Worker(max_concurrent_computation_calls=-1, log_path=None)
  worker.start()
  pid = worker.pid
  worker.stop()
  with pytest.raises(RuntimeError, match='the TFF worker was stopped'):
    worker.stub()
  assert worker.pid is None and not helpers.pid_alive(pid)

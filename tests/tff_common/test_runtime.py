"""The TFF workers never outlive the process that started them, nor hold its pipes;
bad or unreachable workers are one-line errors; a remote worker (and the worker
binary that serves one) is used, health-checked and named when it dies.
The equivalence of several workers with one: tests/test_multi_worker.py."""

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
  pid = worker.pid
  os.kill(pid, signal.SIGKILL)
  deadline = time.monotonic() + 10
  with pytest.raises(runtime.WorkerFailed) as error:
    while time.monotonic() < deadline:
      worker.stub()
      time.sleep(0.05)
  # One line: the worker, how it ended, where its log is.
  assert str(error.value) == (f'TFF worker (local, pid {pid}) was killed by signal 9; '
                              f'its log: {worker.log_path}')
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


def test_bad_worker_settings_are_one_line_input_errors_and_start_nothing(monkeypatch):
  from tff_common import errors
  from tff_common import runtime
  launched = []
  monkeypatch.setattr(runtime.Worker, 'launch', lambda self: launched.append(self))
  for kwargs, message in (
      (dict(workers=['nohost']), "--workers='nohost': expected host:port"),
      (dict(workers=['h:0']), "--workers='h:0': expected host:port"),
      (dict(local_workers=0), '--local_workers=0: expected an integer >= 1'),
      (dict(workers=['h:1'], local_workers=-1), '--local_workers=-1: expected an integer >= 0'),
  ):
    with pytest.raises(errors.InputError) as error:
      runtime.start(**kwargs)
    assert str(error.value).startswith(message) and '\n' not in str(error.value)
  assert launched == []


def test_an_unreachable_remote_worker_is_refused_within_seconds(monkeypatch):
  import portpicker

  from tff_common import errors
  from tff_common import runtime
  monkeypatch.setattr(runtime, 'CONNECT_TIMEOUT_SEC', 1.0)
  started = []
  launch = runtime.Worker.launch
  monkeypatch.setattr(runtime.Worker, 'launch', lambda self: (launch(self), started.append(self.pid)))
  address = f'localhost:{portpicker.pick_unused_port()}'
  began = time.monotonic()
  with pytest.raises(errors.InputError) as error:
    runtime.start(workers=[address], local_workers=1)
  assert time.monotonic() - began < 10
  assert str(error.value).startswith(f"--workers='{address}': expected running TFF workers, "
                                     f'but {address}: no TFF worker answered within 1 s')
  # The local worker started alongside is not left behind.
  assert len(started) == 1 and not helpers.pid_alive(started[0])


def _chained(tff, np):
  """A variance: its second aggregation needs the first's result, so TFF
  cannot split it across workers (the single-worker path runs it)."""

  @tff.tensorflow.computation(np.float32, np.float32)
  def squared_deviation(x, mean):
    return (x - mean) * (x - mean)

  @tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
  def variance(x):
    mean = tff.federated_broadcast(tff.federated_mean(x))
    return tff.federated_mean(tff.federated_map(squared_deviation, (x, mean)))

  return variance


def test_remote_and_local_workers_split_a_round_and_a_dead_remote_is_named():
  """A worker someone else runs (here: started by the test) next to an owned
  one: a mean is split between them, a chained computation runs whole on the
  first, and when the remote one dies the error names it."""
  import numpy as np
  import tensorflow_federated as tff

  from tff_common import runtime

  @tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
  def total(x):
    return tff.federated_sum(x)

  variance = _chained(tff, np)
  assert runtime.mergeable_form(variance) is None
  assert runtime.mergeable_form(total) is not None
  remote = runtime.Worker(max_concurrent_computation_calls=-1, log_path=None)
  remote.start()
  try:
    with runtime.installed(workers=[remote.address], local_workers=1) as rt:
      local, connected = rt.workers
      assert isinstance(connected, runtime.RemoteWorker) and local.pid is not None
      assert total([1.0, 2.0, 3.0, 4.0]) == 10.0
      assert variance([1.0, 2.0, 3.0, 6.0]) == pytest.approx(3.5)
      os.kill(remote.pid, signal.SIGKILL)
      with pytest.raises(runtime.WorkerFailed) as error:
        total([1.0, 2.0, 3.0, 4.0])
      assert str(error.value).startswith(
          f'TFF worker 2/2 (remote, {remote.address}) stopped answering: unreachable')
      assert 'its log is on that host' in str(error.value) and '\n' not in str(error.value)
    assert not helpers.pid_alive(local.pid)
  finally:
    remote.stop()
    os.remove(remote.log_path)


def test_the_worker_binary_serves_answers_health_checks_and_stops_on_sigterm(tmp_path):
  """`python -m tff_common.worker`, the way a worker runs on another host."""
  import portpicker

  from tff_common import errors
  from tff_common import runtime
  port = portpicker.pick_unused_port()
  log = tmp_path / 'worker.log'
  process = subprocess.Popen(
      [sys.executable, '-m', 'tff_common.worker', f'--port={port}', f'--log={log}'],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
  try:
    line = process.stdout.readline().decode()
    assert line.startswith(f'ready: TFF worker on port {port} (pid '), line
    child = int(line.split('(pid ')[1].split(')')[0])
    assert runtime.check_workers([f'localhost:{port}']) == []
    # A second worker on the port would share it (gRPC's SO_REUSEPORT): refused.
    with pytest.raises(errors.InputError, match=f'--port={port}: expected a free port'):
      runtime.serve(port=port)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
  finally:
    if process.poll() is None:
      process.kill()
  assert process.returncode == 143 and stderr.decode().splitlines() == ['interrupted']
  assert not helpers.pid_alive(child)
  assert log.exists()

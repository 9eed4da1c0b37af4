"""TFF's local C++ execution context, with a worker process that cannot outlive us.

TFF's own `tff.backends.native.set_sync_local_cpp_execution_context` starts a
C++ `worker_binary` lazily, hands it our stdout/stderr and only stops it from a
`__del__` that may never run. A worker left behind keeps the caller's pipes
open, so `./run.sh | cat` or a CI log reader never sees EOF.

`install_execution_context` builds the same context (TFF's compiler, remote
executor and gRPC stub) around a worker that this module owns:

*   it is started eagerly from the calling (main) thread, with the kernel told
    to SIGKILL it when we die (`PR_SET_PDEATHSIG`), which covers even `kill -9`;
*   its stdout/stderr go to a log file, never to our pipes; if the worker dies,
    the error names that log and quotes its tail;
*   computations are compiled with TFF's secure-sum intrinsics replaced by
    plain sums (`compile_for_simulation`): TFF's C++ runtime cannot execute
    them, and `--aggregator=secure` uses them;
*   `atexit` stops and reaps it; SIGTERM is turned into `errors.Interrupted`
    (a `SystemExit` with code 143; SIGINT already is `KeyboardInterrupt`) so
    that `finally` blocks and `atexit` run. `tff_common.program` turns either
    into one line naming the round to resume from; `tff_common.cli.run` prints
    it and exits 130 / 143.
"""

import atexit
import ctypes
import ctypes.util
import os
import signal
import subprocess
import tempfile
import threading
import time
from typing import Optional

import grpc
import portpicker

from tff_common import errors

_PR_SET_PDEATHSIG = 1
_STARTUP_TIMEOUT_SEC = 60.0
_GRPC_MAX_MESSAGE_LENGTH_BYTES = 2 * 1000 * 1000 * 1000
_GRPC_CHANNEL_OPTIONS = [
    ('grpc.max_message_length', _GRPC_MAX_MESSAGE_LENGTH_BYTES),
    ('grpc.max_receive_message_length', _GRPC_MAX_MESSAGE_LENGTH_BYTES),
    ('grpc.max_send_message_length', _GRPC_MAX_MESSAGE_LENGTH_BYTES),
]

# Resolved before any fork: the child of `fork()` in a threaded process must
# not load libraries or take locks, only make this one system call.
_libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                   ctypes.c_ulong]


def _die_with_parent():
  _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def worker_binary_path() -> str:
  import tensorflow_federated
  path = os.path.join(os.path.dirname(tensorflow_federated.__file__), 'data',
                      'worker_binary')
  if not os.path.isfile(path):
    raise RuntimeError(f'TFF worker binary not found at {path}; is '
                       'tensorflow-federated 0.87.0 installed from the lock?')
  return path


class Worker:
  """One `worker_binary` process and the gRPC stub that talks to it."""

  def __init__(self, *, max_concurrent_computation_calls: int,
               log_path: Optional[str]):
    self._max_calls = max_concurrent_computation_calls
    # A temporary log is ours to delete once the worker stopped cleanly.
    self._owns_log = log_path is None
    if log_path is None:
      fd, log_path = tempfile.mkstemp(prefix='tff_worker_', suffix='.log')
      os.close(fd)
    self.log_path = log_path
    self._lock = threading.RLock()  # stop() may run inside stub() -> start()
    self._process: Optional[subprocess.Popen] = None
    self._stub = None
    self._stopped = False
    self._owner_pid = os.getpid()

  @property
  def pid(self) -> Optional[int]:
    return self._process.pid if self._process is not None else None

  def start(self):
    from tensorflow_federated.python.core.impl.executors import (
      remote_executor_grpc_stub,
    )
    port = portpicker.pick_unused_port()
    with open(self.log_path, 'ab') as log:
      self._process = subprocess.Popen(
          [worker_binary_path(), f'--port={port}',
           f'--max_concurrent_computation_calls={self._max_calls}'],
          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
          close_fds=True, preexec_fn=_die_with_parent)
    channel = grpc.insecure_channel(f'localhost:{port}', _GRPC_CHANNEL_OPTIONS)
    self._stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)
    deadline = time.monotonic() + _STARTUP_TIMEOUT_SEC
    while not self._stub.is_ready:
      if self._process.poll() is not None:
        raise RuntimeError(self._death_message())
      if time.monotonic() > deadline:
        self.stop()
        raise RuntimeError(f'TFF worker did not become ready within '
                           f'{_STARTUP_TIMEOUT_SEC:.0f}s; log: {self.log_path}')
      time.sleep(0.02)

  def stub(self):
    """Returns a ready stub; a dead worker is reported, not silently replaced."""
    with self._lock:
      if self._stopped:
        # After an interrupt, TFF's event-loop thread may still be running the
        # round; at exit it must fail, not fork a new worker.
        raise RuntimeError('the TFF worker was stopped')
      if self._process is None:
        self.start()
      elif self._process.poll() is not None:
        raise RuntimeError(self._death_message())
      return self._stub

  def stop(self, timeout: float = 5.0):
    """Stops the worker and reaps it, so its PID is gone when this returns.
    A stopped worker stays stopped (`stub` raises)."""
    with self._lock:
      self._stopped = True
      process, self._process = self._process, None
    if process is None or os.getpid() != self._owner_pid:
      return
    # A worker that already exited on its own crashed: its log is evidence.
    crashed = process.poll() is not None
    if not crashed:
      process.terminate()
      try:
        process.wait(timeout)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if self._owns_log and not crashed:
      try:
        os.remove(self.log_path)
      except OSError:
        pass

  def _death_message(self) -> str:
    code = self._process.returncode if self._process else None
    try:
      with open(self.log_path, 'rb') as f:
        tail = f.read()[-2000:].decode('utf-8', 'replace')
    except OSError:
      tail = ''
    return (f'TFF worker_binary exited (code {code}); its log {self.log_path} '
            f'ends with:\n{tail}')


_worker: Optional[Worker] = None


def compile_for_simulation(comp):
  """TFF's native compiler, after replacing secure-sum intrinsics by plain sums.

  `tff.federated_secure_sum_bitwidth` (and the other secure sums) have no
  implementation in TFF's C++ runtime. TFF's test backend ships
  `replace_secure_intrinsics_with_bodies`, which rewrites each into the sum it
  computes, with the same clipping and quantization around it. So a simulated
  secure aggregation computes exactly what the protocol would (the server
  part of the computation receives only the sum; see
  `tff_common.aggregation`), but no cryptographic masking runs: in this
  process every client value is in memory anyway. Computations without
  secure intrinsics compile as before.
  """
  from tensorflow_federated.python.core.backends.native import compiler
  from tensorflow_federated.python.core.backends.test import compiler as test_compiler
  return compiler.desugar_and_transform_to_native(
      test_compiler.replace_secure_intrinsics_with_bodies(comp))


def install_execution_context(
    *,
    max_concurrent_computation_calls: int = -1,
    default_num_clients: int = 0,
    worker_log: Optional[str] = None,
) -> Worker:
  """Makes TFF's local C++ runtime the default context, with an owned worker.

  Idempotent: a second call returns the running worker. Call it from the main
  thread before running any federated computation.

  Args:
    max_concurrent_computation_calls: Passed to the worker; bounds how many
      client computations run at once (nonpositive: no bound). On a 2-core
      machine a small bound keeps memory flat with many clients.
    default_num_clients: Client cardinality for computations whose arguments
      do not determine it.
    worker_log: Where the worker's stdout/stderr go; a temporary file if None.

  Returns:
    The `Worker`, whose `pid` and `log_path` are there for tests and errors.
  """
  global _worker
  if _worker is not None:
    return _worker

  from tensorflow_federated.python.core.environments.tensorflow_frontend import (
    tensorflow_computation,
  )
  from tensorflow_federated.python.core.impl.context_stack import context_stack_impl
  from tensorflow_federated.python.core.impl.execution_contexts import (
    sync_execution_context,
  )
  from tensorflow_federated.python.core.impl.executor_stacks import (
    python_executor_stacks,
  )
  from tensorflow_federated.python.core.impl.executors import remote_executor
  from tensorflow_federated.python.core.impl.types import placements

  worker = Worker(max_concurrent_computation_calls=max_concurrent_computation_calls,
                  log_path=worker_log)
  worker.start()
  atexit.register(worker.stop)
  install_signal_handlers()

  def stack_fn(cardinalities):
    if cardinalities.get(placements.CLIENTS) is None:
      cardinalities[placements.CLIENTS] = default_num_clients
    executor = remote_executor.RemoteExecutor(worker.stub())
    executor.set_cardinalities(cardinalities)
    return executor

  context = sync_execution_context.SyncExecutionContext(
      executor_fn=python_executor_stacks.ResourceManagingExecutorFactory(
          executor_stack_fn=stack_fn),
      compiler_fn=compile_for_simulation,
      transform_args=tensorflow_computation.transform_args,
      transform_result=tensorflow_computation.transform_result,
  )
  context_stack_impl.context_stack.set_default_context(context)
  _worker = worker
  return worker


def shutdown():
  """Stops the worker now (it is also stopped at exit)."""
  global _worker
  if _worker is not None:
    _worker.stop()
    _worker = None


def _raise_interrupted(signum, frame):
  del frame
  raise errors.Interrupted('interrupted', 128 + signum)


def install_signal_handlers():
  """SIGTERM raises `errors.Interrupted('interrupted', 143)` in the main thread.

  SIGTERM's default action kills the process without running `finally` or
  atexit, which stop and reap the worker; the exception runs them. A caller's
  own handler is left alone.
  Called by `install_execution_context`, and by `cli.run` for binaries that
  run no federated computation.
  """
  if threading.current_thread() is not threading.main_thread():
    return
  if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _raise_interrupted)
  # SIGINT already raises KeyboardInterrupt in Python; nothing to add.

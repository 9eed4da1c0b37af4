"""TFF's C++ execution context over one or more workers that cannot outlive us.

TFF's own `tff.backends.native.set_sync_local_cpp_execution_context` starts a
C++ `worker_binary` lazily, hands it our stdout/stderr and only stops it from a
`__del__` that may never run. A worker left behind keeps the caller's pipes
open, so `./run.sh | cat` or a CI log reader never sees EOF.

`install_execution_context` builds the same context (TFF's compiler, remote
executor and gRPC stub) around workers that this module knows by name:

*   `local_workers` owned workers (default one), started eagerly from the
    calling (main) thread, each with the kernel told to SIGKILL it when we die
    (`PR_SET_PDEATHSIG`), which covers even `kill -9`; each writes to its own
    log file, never to our pipes; `atexit` stops and reaps them;
*   `workers`: `host:port` of workers someone else started (on this or another
    machine, e.g. `python -m tff_common.worker --port=P`); one that does not
    answer a health check within `CONNECT_TIMEOUT_SEC` is refused at start
    (`errors.InputError`), not waited for;
*   computations are compiled with TFF's secure-sum intrinsics replaced by
    plain sums (`compile_for_simulation`): TFF's C++ runtime cannot execute
    them, and `--aggregator=secure` uses them;
*   with several workers, a computation whose client work ends in one
    aggregation (a round of FedAvg or FedRecon, with any of the project's
    aggregators) runs as TFF's mergeable form: the sampled clients are cut
    into one contiguous chunk per worker, each worker aggregates its chunk,
    the partial aggregates are merged and the server part runs once. A
    computation TFF cannot split that way (an aggregation whose input depends
    on another's result; none of the project's) or that has no client data
    runs whole on the first worker, as with one worker. Both give the same
    values as one worker, up to the order of float additions;
*   a worker that dies (or stops answering) is reported as `WorkerFailed`,
    one line naming the worker and its log, and is never silently replaced;
*   SIGTERM is turned into `errors.Interrupted` (a `SystemExit` with code 143;
    SIGINT already is `KeyboardInterrupt`) so that `finally` blocks and
    `atexit` run. `tff_common.program` turns either into one line naming the
    round to resume from; `tff_common.cli.run` prints it and exits 130 / 143.

Where workers run, what crosses the wire and how to secure it:
docs/DEPLOYMENT.md.
"""

import atexit
import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Optional
from typing import Union

import grpc
import portpicker

from tff_common import checks
from tff_common import errors

_PR_SET_PDEATHSIG = 1
_STARTUP_TIMEOUT_SEC = 60.0
# A remote worker must answer within this at start; after a failed call, a
# worker that does not answer within `_HEALTH_TIMEOUT_SEC` is the one to blame.
CONNECT_TIMEOUT_SEC = 10.0
_HEALTH_TIMEOUT_SEC = 3.0
# A local worker that exits while starting (most likely: another process took
# the port portpicker chose) is started again on another port, this many times.
_START_ATTEMPTS = 3
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


class WorkerFailed(errors.InputError):
  """A worker died or stopped answering: one line naming it and its log.

  An `InputError` (one line, exit 2 through `tff_common.cli.run`) because the
  cure is outside the code: bring the worker back (or fix `--workers`) and
  rerun the same command, which resumes from the last checkpoint.
  """


def worker_binary_path() -> str:
  """TFF's C++ worker, found without importing TensorFlow."""
  import importlib.util
  spec = importlib.util.find_spec('tensorflow_federated')
  if spec is None or spec.origin is None:
    raise RuntimeError('tensorflow-federated is not installed; install it from the lock')
  path = os.path.join(os.path.dirname(spec.origin), 'data', 'worker_binary')
  if not os.path.isfile(path):
    raise RuntimeError(f'TFF worker binary not found at {path}; is '
                       'tensorflow-federated 0.87.0 installed from the lock?')
  return path


def worker_command(*, port: int, max_concurrent_computation_calls: int = -1) -> list[str]:
  """The command line of one TFF worker serving on `port` (all interfaces)."""
  return [worker_binary_path(), f'--port={port}',
          f'--max_concurrent_computation_calls={max_concurrent_computation_calls}']


def parse_address(address: str, *, flag: str = 'workers') -> tuple[str, int]:
  """`host:port` (or `[v6]:port`) -> (host, port); an `InputError` naming
  `--flag` otherwise."""
  host, sep, port = address.strip().rpartition(':')
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    checks.fail(flag, address, 'host:port[,host:port...] with ports in 1..65535')
  return host, int(port)


def health_check(channel: grpc.Channel, timeout: float, *, wait: bool = True) -> Optional[str]:
  """None if a TFF worker answers on `channel` within `timeout` seconds, else why not.

  The check is one real request, not just a TCP connection: it asks the
  worker for an executor (cardinality zero) and disposes of it at once, so a
  port held by something that is not a TFF worker fails too. With `wait`, a
  worker not listening yet (still starting) is waited for, up to `timeout`;
  without, a refused connection fails at once.
  """
  from tensorflow_federated.proto.v0 import executor_pb2
  from tensorflow_federated.proto.v0 import executor_pb2_grpc
  from tensorflow_federated.python.core.impl.executors import value_serialization
  from tensorflow_federated.python.core.impl.types import placements
  stub = executor_pb2_grpc.ExecutorGroupStub(channel)
  request = executor_pb2.GetExecutorRequest(
      cardinalities=value_serialization.serialize_cardinalities({placements.CLIENTS: 0}))
  try:
    executor = stub.GetExecutor(request, timeout=timeout, wait_for_ready=wait).executor
    stub.DisposeExecutor(executor_pb2.DisposeExecutorRequest(executor=executor),
                         timeout=timeout)
  except grpc.RpcError as e:
    if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
      return f'no TFF worker answered within {timeout:g} s'
    if e.code() == grpc.StatusCode.UNAVAILABLE:
      return f'unreachable ({e.details()})'
    return f'not a TFF worker ({e.code().name}: {e.details()})'
  return None


def _channel(address: str) -> grpc.Channel:
  return grpc.insecure_channel(address, _GRPC_CHANNEL_OPTIONS)


def _stub_for(channel: grpc.Channel):
  from tensorflow_federated.python.core.impl.executors import remote_executor_grpc_stub
  return remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)


class Worker:
  """One owned `worker_binary` process and the gRPC stub that talks to it."""

  def __init__(self, *, max_concurrent_computation_calls: int,
               log_path: Optional[str] = None, log_dir: Optional[str] = None,
               name: str = 'TFF worker'):
    self._max_calls = max_concurrent_computation_calls
    self.name = name
    # A temporary log is ours to delete once the worker stopped cleanly.
    self._owns_log = log_path is None
    if log_path is None:
      fd, log_path = tempfile.mkstemp(prefix='tff_worker_', suffix='.log', dir=log_dir)
      os.close(fd)
    self.log_path = log_path
    self._lock = threading.RLock()  # stop() may run inside stub() -> start()
    self._process: Optional[subprocess.Popen] = None
    self._channel: Optional[grpc.Channel] = None
    self._stub = None
    self._port: Optional[int] = None
    self._stopped = False
    self._owner_pid = os.getpid()

  @property
  def pid(self) -> Optional[int]:
    return self._process.pid if self._process is not None else None

  @property
  def address(self) -> Optional[str]:
    return f'localhost:{self._port}' if self._port is not None else None

  def start(self):
    """Starts the process and returns once it answers (or raises)."""
    self.launch()
    self.wait_ready()

  def launch(self):
    """Starts the process without waiting for it (`wait_ready` does). Several
    workers boot in parallel this way; all are forked before any gRPC channel
    exists (gRPC warns about a fork while its threads run)."""
    self._port = portpicker.pick_unused_port()
    with open(self.log_path, 'ab') as log:
      self._process = subprocess.Popen(
          worker_command(port=self._port, max_concurrent_computation_calls=self._max_calls),
          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
          close_fds=True, preexec_fn=_die_with_parent)

  def wait_ready(self):
    deadline = time.monotonic() + _STARTUP_TIMEOUT_SEC
    for attempt in range(1, _START_ATTEMPTS + 1):
      self._channel = _channel(self.address)
      self._stub = _stub_for(self._channel)
      while self._process.poll() is None:
        if health_check(self._channel, 0.5) is None:
          return
        if time.monotonic() > deadline:
          self.stop()
          raise RuntimeError(f'{self.name} did not become ready within '
                             f'{_STARTUP_TIMEOUT_SEC:.0f}s; log: {self.log_path}')
      self._channel.close()
      if attempt == _START_ATTEMPTS:
        raise RuntimeError(self._death_message())
      self.launch()  # most likely the port was taken between pick and bind

  def stub(self):
    """Returns a ready stub; a dead worker is reported, not silently replaced."""
    with self._lock:
      if self._stopped:
        # After an interrupt, TFF's event-loop thread may still be running the
        # round; at exit it must fail, not fork a new worker.
        raise RuntimeError(f'the {self.name} was stopped')
      if self._process is None:
        self.start()
      elif self._process.poll() is not None:
        raise WorkerFailed(self._death_message())
      return self._stub

  def failure(self, grace: float = 0.0) -> Optional[str]:
    """Why this worker cannot serve (one line), or None if it still runs
    `grace` seconds from now (a killed worker closes its connections a moment
    before the kernel reports it dead)."""
    with self._lock:
      process = self._process
      if process is None:
        return None
      try:
        process.wait(grace)
      except subprocess.TimeoutExpired:
        return None
      return self._death_message()

  def stop(self, timeout: float = 5.0):
    """Stops the worker and reaps it, so its PID is gone when this returns.
    A stopped worker stays stopped (`stub` raises)."""
    with self._lock:
      self._stopped = True
      process, self._process = self._process, None
      channel, self._channel = self._channel, None
    if channel is not None:
      channel.close()
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
    process = self._process
    code = process.returncode if process is not None else None
    pid = process.pid if process is not None else None
    how = (f'was killed by signal {-code}' if code is not None and code < 0
           else f'exited with code {code}')
    last = _last_line(self.log_path)
    return (f'{self.name} (local, pid {pid}) {how}; its log: {self.log_path}'
            + (f' (last line: {last})' if last and (code or 0) > 0 else ''))


def _last_line(path: str) -> str:
  try:
    with open(path, 'rb') as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 4000))
      lines = f.read().decode('utf-8', 'replace').strip().splitlines()
  except OSError:
    return ''
  return lines[-1].strip()[:300] if lines else ''


class RemoteWorker:
  """A worker someone else started and owns, at `host:port`; we only connect."""

  def __init__(self, address: str, *, name: str = 'TFF worker'):
    parse_address(address)
    self.address = address.strip()
    self.name = name
    self.pid = None
    self.log_path = None
    self._channel: Optional[grpc.Channel] = None
    self._stub = None
    self._stopped = False

  def start(self):
    """Opens the channel (`check_workers` is the health check at start)."""
    self._channel = _channel(self.address)
    self._stub = _stub_for(self._channel)

  def stub(self):
    if self._stopped:
      raise RuntimeError(f'the connection to {self.name} was closed')
    if self._stub is None:
      self.start()
    elif not self._stub.is_ready:
      # A new executor after a failed call: the worker must still be there.
      reason = self.failure()
      if reason is not None:
        raise WorkerFailed(reason)
    return self._stub

  def failure(self, grace: float = 0.0) -> Optional[str]:
    """Why this worker cannot serve (one line), or None if it answers a
    health check (`grace` is unused: the check has its own timeout)."""
    del grace
    if self._channel is None:
      return None
    reason = health_check(self._channel, _HEALTH_TIMEOUT_SEC, wait=False)
    if reason is None:
      return None
    port = parse_address(self.address)[1]
    return (f'{self.name} (remote, {self.address}) stopped answering: {reason}; its log is '
            f'on that host; restart it there (python -m tff_common.worker --port={port})')

  def stop(self, timeout: float = 5.0):
    del timeout
    self._stopped = True
    channel, self._channel = self._channel, None
    if channel is not None:
      channel.close()


AnyWorker = Union[Worker, RemoteWorker]


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


def mergeable_form(comp):
  """`comp` in TFF's mergeable form (secure sums replaced, as in
  `compile_for_simulation`), or None if TFF cannot split it.

  TFF splits a computation on its one aggregation (several independent ones
  count as one): `up_to_merge` runs on each worker's chunk of clients,
  `merge` combines partial aggregates, `after_merge` runs the server part.
  It refuses an aggregation whose input depends on another aggregation's
  result (`ValueError`), e.g. a variance that broadcasts the mean it has just
  aggregated. Every computation of both jobs splits, including the median
  aggregators (their one aggregation collects the values; the median is
  taken after the merge): docs/DEPLOYMENT.md lists what was measured.
  """
  from tensorflow_federated.python.core.backends.native import mergeable_comp_compiler
  from tensorflow_federated.python.core.backends.test import compiler as test_compiler
  from tensorflow_federated.python.core.impl.computation import computation_impl
  # The rewrite goes through the proto, which drops the Python containers of
  # the result type (e.g. a LearningProcessOutput); the original type puts
  # them back, as TFF's own contexts do.
  replaced = computation_impl.ConcreteComputation.with_type(
      test_compiler.replace_secure_intrinsics_with_bodies(comp), comp.type_signature)
  try:
    return mergeable_comp_compiler.compile_to_mergeable_comp_form(replaced)
  except ValueError:
    return None


def _executor_factory(worker: AnyWorker, default_num_clients: int):
  from tensorflow_federated.python.core.impl.executor_stacks import (
    python_executor_stacks,
  )
  from tensorflow_federated.python.core.impl.executors import remote_executor
  from tensorflow_federated.python.core.impl.types import placements

  def stack_fn(cardinalities):
    if cardinalities.get(placements.CLIENTS) is None:
      cardinalities[placements.CLIENTS] = default_num_clients
    executor = remote_executor.RemoteExecutor(worker.stub())
    executor.set_cardinalities(cardinalities)
    return executor

  return python_executor_stacks.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn)


_compiled = None


def _build_context(workers: Sequence[AnyWorker], *, default_num_clients: int):
  """A `SyncContext` over `workers` (see the module docstring for the split)."""
  from tensorflow_federated.python.core.environments.tensorflow_frontend import (
    tensorflow_computation,
  )
  from tensorflow_federated.python.core.impl.context_stack import context_base
  from tensorflow_federated.python.core.impl.execution_contexts import (
    async_execution_context,
  )
  from tensorflow_federated.python.core.impl.execution_contexts import compiler_pipeline
  from tensorflow_federated.python.core.impl.execution_contexts import (
    mergeable_comp_execution_context as mergeable,
  )
  from tensorflow_federated.python.core.impl.execution_contexts import (
    sync_execution_context,
  )
  from tensorflow_federated.python.core.impl.executors import cardinalities_utils
  from tensorflow_federated.python.core.impl.types import placements

  global _compiled
  if _compiled is None:
    # One compilation per computation (equal protos are equal computations),
    # shared by every worker's context and every context of this process.
    _compiled = compiler_pipeline.CompilerPipeline(compile_for_simulation)
  common = dict(compiler_fn=_compiled.compile,
                transform_args=tensorflow_computation.transform_args,
                transform_result=tensorflow_computation.transform_result)
  # The single-worker path (every computation with one worker; with several,
  # the ones TFF cannot split): the context of one worker, on the first.
  single = sync_execution_context.SyncExecutionContext(
      executor_fn=_executor_factory(workers[0], default_num_clients), **common)
  split = None
  if len(workers) > 1:
    split = mergeable.MergeableCompExecutionContext(
        [async_execution_context.AsyncExecutionContext(
            executor_fn=_executor_factory(w, default_num_clients), **common) for w in workers],
        transform_result=tensorflow_computation.transform_result)
  forms = compiler_pipeline.CompilerPipeline(mergeable_form)  # cached per computation

  class _Context(context_base.SyncContext):
    """Splits what can be split over all workers; names a failed worker."""

    def invoke(self, comp, arg):
      try:
        form = forms.compile(comp) if split is not None and _has_clients(comp, arg) else None
        if form is None:
          return single.invoke(comp, arg)
        return split.invoke(form, arg)
      except Exception as e:
        # A worker killed mid-call surfaces as some gRPC error deep in TFF (or
        # as `WorkerFailed` when TFF's retry asks for it again); the user needs
        # to know which worker, where its log is, and what to do.
        reason = str(e) if isinstance(e, WorkerFailed) else _first_failure(workers)
        if reason is None:
          raise
        raise WorkerFailed(f'{reason}; rerun the same command to resume from the '
                           'last checkpoint') from e

  def _has_clients(comp, arg) -> bool:
    """Whether `arg` places values on two or more clients: without them (a
    server-only computation, or TFF's default client count) there is nothing
    to split, and the single path keeps the client count one worker sees."""
    if arg is None or comp.type_signature.parameter is None:
      return False
    cardinalities = cardinalities_utils.infer_cardinalities(arg, comp.type_signature.parameter)
    return (cardinalities.get(placements.CLIENTS) or 0) >= 2

  return _Context()


def _first_failure(workers: Sequence[AnyWorker]) -> Optional[str]:
  for worker in workers:
    reason = worker.failure(grace=0.5)
    if reason is not None:
      return reason
  return None


class Runtime:
  """The workers of one context, and the context. `stop` stops owned workers
  and closes connections to remote ones."""

  def __init__(self, workers: Sequence[AnyWorker], context):
    self.workers = list(workers)
    self.context = context

  def stop(self):
    for worker in self.workers:
      worker.stop()


def start(*, workers: Sequence[str] = (), local_workers: Optional[int] = None,
          max_concurrent_computation_calls: int = -1, default_num_clients: int = 0,
          log_dir: Optional[str] = None) -> Runtime:
  """Starts `local_workers` owned workers, connects to `workers`, builds the context.

  Does not install the context (see `install_execution_context`, and
  `installed` for a scoped one). On any failure, whatever was started is
  stopped before the error propagates.

  Args:
    workers: `host:port` of running workers (`--workers`).
    local_workers: Owned workers to start (`--local_workers`); None: one if
      `workers` is empty, else none.
    max_concurrent_computation_calls: Passed to owned workers; bounds how many
      client computations run at once in each (nonpositive: no bound).
    default_num_clients: Client cardinality for computations whose arguments
      do not determine it.
    log_dir: Where owned workers' logs go (`tff_worker_*.log`); the system's
      temporary directory if None. A log is removed when its worker stops
      cleanly, kept when it crashed.

  Raises:
    errors.InputError: a bad `--workers` / `--local_workers`, or a remote
      worker that does not answer within `CONNECT_TIMEOUT_SEC`.
  """
  workers = [w.strip() for w in workers if w.strip()]
  for address in workers:
    parse_address(address)
  if len(set(workers)) < len(workers):
    checks.fail('workers', ','.join(workers), 'distinct host:port addresses')
  if local_workers is None:
    local_workers = 0 if workers else 1
  checks.at_least('local_workers', local_workers, 0 if workers else 1)
  count = len(workers) + local_workers
  names = [f'TFF worker {i}/{count}' for i in range(1, count + 1)]
  started: list[AnyWorker] = []
  try:
    for i in range(local_workers):
      worker = Worker(max_concurrent_computation_calls=max_concurrent_computation_calls,
                      log_dir=log_dir, name=names[i])
      started.append(worker)
      worker.launch()
    # Remote workers are checked while the local ones boot, all in parallel:
    # an unreachable one is refused within CONNECT_TIMEOUT_SEC, not waited for.
    unreachable = check_workers(workers, flag='workers')
    if unreachable:
      checks.fail('workers', ','.join(workers),
                  f'running TFF workers, but {"; ".join(unreachable)}; start one on each host '
                  'with `python -m tff_common.worker --port=PORT` (docs/DEPLOYMENT.md)')
    for i, address in enumerate(workers):
      worker = RemoteWorker(address, name=names[local_workers + i])
      started.append(worker)
      worker.start()
    for worker in started[:local_workers]:
      worker.wait_ready()
    return Runtime(started, _build_context(started, default_num_clients=default_num_clients))
  except BaseException:
    for worker in started:
      worker.stop()
    raise


def serve(*, port: int, max_concurrent_computation_calls: int = -1,
          log_path: Optional[str] = None, log=print):
  """Runs one TFF worker on `port` in the foreground, for an orchestrator on
  another machine (`python -m tff_common.worker`; docs/DEPLOYMENT.md).

  The worker listens on every interface of this host, without TLS or
  authentication. It dies with this process (even on `kill -9`); SIGTERM /
  SIGINT stop it and raise `errors.Interrupted` / `KeyboardInterrupt`. Its
  output goes to `log_path`, or to this process's stdout/stderr (a
  container's log) if None. `log` receives one line once the worker answers a
  health check. Returns only by raising: `WorkerFailed` when the worker
  exits on its own, `errors.InputError` for a bad port or one in use.
  """
  checks.in_range('port', port, 1, 65535)
  if not _port_is_free(port):
    # Checked here because the worker would not say: gRPC binds with
    # SO_REUSEPORT, so a second worker on a port shares it with the first.
    checks.fail('port', port, 'a free port; another process listens on it')
  output = open(log_path, 'ab') if log_path else None
  process = subprocess.Popen(
      worker_command(port=port, max_concurrent_computation_calls=max_concurrent_computation_calls),
      stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT if output else None,
      close_fds=True, preexec_fn=_die_with_parent)
  channel = None
  where = f'; its log: {log_path}' if log_path else ''
  try:
    channel = _channel(f'localhost:{port}')
    deadline = time.monotonic() + _STARTUP_TIMEOUT_SEC
    while process.poll() is None and health_check(channel, 0.5) is not None:
      if time.monotonic() > deadline:
        raise WorkerFailed(f'the TFF worker on port {port} did not answer within '
                           f'{_STARTUP_TIMEOUT_SEC:.0f} s{where}')
    if process.poll() is not None:
      checks.fail('port', port, f'a free port; the TFF worker exited while starting '
                                f'(code {process.returncode}){where}')
    channel.close()
    channel = None
    log(f'ready: TFF worker on port {port} (pid {process.pid}); '
        f'check it with python -m tff_common.worker --check=HOST:{port}')
    code = process.wait()
    raise WorkerFailed(f'the TFF worker on port {port} (pid {process.pid}) exited with '
                       f'code {code}{where}')
  finally:
    if channel is not None:
      channel.close()
    if process.poll() is None:
      process.terminate()
      try:
        process.wait(5)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if output is not None:
      output.close()


def _port_is_free(port: int) -> bool:
  for family, host in ((socket.AF_INET6, '::'), (socket.AF_INET, '0.0.0.0')):
    try:
      with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, port))
    except OSError as e:
      if e.errno == errno.EADDRINUSE:
        return False
  return True


def check_workers(addresses: Sequence[str], *, timeout: Optional[float] = None,
                  flag: str = 'check') -> list[str]:
  """Health-checks `host:port` workers in parallel: `host:port: why` for each
  that does not answer within `timeout` (`CONNECT_TIMEOUT_SEC` if None), an
  empty list if all do. A bad address is an `errors.InputError` naming `--flag`."""
  timeout = CONNECT_TIMEOUT_SEC if timeout is None else timeout
  for address in addresses:
    parse_address(address, flag=flag)
  channels = [_channel(address) for address in addresses]
  try:
    results = [None] * len(channels)

    def check(i):
      results[i] = health_check(channels[i], timeout)

    threads = [threading.Thread(target=check, args=(i,)) for i in range(len(channels))]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
  finally:
    for channel in channels:
      channel.close()
  return [f'{address}: {reason}' for address, reason in zip(addresses, results) if reason]


_runtime: Optional[Runtime] = None


def install_execution_context(
    *,
    workers: Sequence[str] = (),
    local_workers: Optional[int] = None,
    max_concurrent_computation_calls: int = -1,
    default_num_clients: int = 0,
    log_dir: Optional[str] = None,
) -> AnyWorker:
  """Makes TFF's C++ runtime over these workers the default context.

  Idempotent: a second call returns the running first worker, whatever its
  arguments. Call it from the main thread before running any federated
  computation. Arguments: see `start`; the default is one owned local worker.

  Returns:
    The first worker (the one that runs computations that are not split),
    whose `pid` and `log_path` are there for tests and errors; `workers()`
    lists them all.
  """
  global _runtime
  if _runtime is not None:
    return _runtime.workers[0]
  from tensorflow_federated.python.core.impl.context_stack import context_stack_impl
  runtime = start(workers=workers, local_workers=local_workers,
                  max_concurrent_computation_calls=max_concurrent_computation_calls,
                  default_num_clients=default_num_clients, log_dir=log_dir)
  atexit.register(runtime.stop)
  install_signal_handlers()
  context_stack_impl.context_stack.set_default_context(runtime.context)
  _runtime = runtime
  return runtime.workers[0]


def workers() -> list[AnyWorker]:
  """The installed context's workers (empty if none is installed)."""
  return list(_runtime.workers) if _runtime is not None else []


@contextlib.contextmanager
def installed(**kwargs):
  """`start(**kwargs)`, with its context current inside the `with` block only;
  the workers are stopped at its end and the previous context is current
  again. For tests and benchmarks that compare runtimes in one process."""
  from tensorflow_federated.python.core.impl.context_stack import context_stack_impl
  runtime = start(**kwargs)
  try:
    with context_stack_impl.context_stack.install(runtime.context):
      yield runtime
  finally:
    runtime.stop()


def shutdown():
  """Stops the installed workers now (they are also stopped at exit)."""
  global _runtime
  if _runtime is not None:
    _runtime.stop()
    _runtime = None


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

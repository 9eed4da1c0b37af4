"""Asynchronous buffered aggregation (FedBuff) against the synchronous loop, on a simulated clock.

Everything here runs on the Python orchestrator, which simulates time: client
work is computed for real, but how long each job takes is drawn from a
heavy-tailed distribution, because in deployments a few slow clients
(stragglers) dominate the wait of a synchronous round.

Synchronous: every round waits for the slowest of the K clients.

Asynchronous (FedBuff, Nguyen et al. 2022): every client always works on the
newest model it was given; when it finishes, its update goes into a buffer and
it immediately gets the current model for its next job. After every B arrived
updates the server steps with their mean, each update scaled by
`1 / (1 + staleness) ** exponent`, staleness being the server steps taken since
that client's model was sent. With equal delays and B = K this is exactly the
synchronous loop (same updates, same order, same rounding).

Both protocols use the same delay of job j of client k, so they are compared
under the same clients' speeds.
"""

import dataclasses
import heapq
import math
from collections.abc import Sequence
from typing import Callable
from typing import Optional

import numpy as np

from numpy_fl import algorithms
from numpy_fl import client as client_lib
from numpy_fl import server as server_lib

DISTRIBUTIONS = ('lognormal', 'pareto')


@dataclasses.dataclass(frozen=True)
class Delays:
  """Simulated duration of job `j` of client `k`, a pure function of `(seed, k, j)`.

  lognormal: `scale * exp(spread * N(0, 1))` (median `scale`).
  pareto: `scale * (1 + Lomax(1 / spread))` (minimum `scale`, tail index
  `1 / spread`: infinite variance once spread >= 0.5).
  `spread = 0` makes every job take exactly `scale`.
  """
  distribution: str = 'lognormal'
  scale: float = 1.0
  spread: float = 1.0
  seed: int = 0

  def __post_init__(self):
    if self.distribution not in DISTRIBUTIONS:
      raise ValueError(f'unknown delay distribution {self.distribution!r}; expected one of '
                       f'{", ".join(DISTRIBUTIONS)}')
    if self.scale <= 0:
      raise ValueError(f'delay scale must be positive, got {self.scale}')
    if self.spread < 0:
      raise ValueError(f'delay spread must be non-negative, got {self.spread}')

  def __call__(self, client_index: int, job: int) -> float:
    if self.spread == 0:
      return float(self.scale)
    rng = np.random.default_rng([self.seed, client_index, job])
    if self.distribution == 'lognormal':
      return float(self.scale * math.exp(self.spread * rng.standard_normal()))
    return float(self.scale * (1.0 + rng.pareto(1.0 / self.spread)))


def staleness_weight(staleness: int, *, exponent: float = 0.5) -> float:
  """FedBuff's discount of an update computed on a model `staleness` steps old."""
  return 1.0 / (1.0 + staleness) ** exponent


@dataclasses.dataclass(frozen=True)
class TracePoint:
  time: float            # simulated clock when the server stepped
  server_steps: int
  client_updates: int    # updates received by the server so far
  loss: float            # global loss after that step


@dataclasses.dataclass
class Trace:
  protocol: str
  initial_loss: float
  points: list[TracePoint]
  weights: np.ndarray    # final server weights

  def first_reaching(self, target_loss: float) -> Optional[TracePoint]:
    for point in self.points:
      if point.loss <= target_loss:
        return point
    return None


def run_sync(*, server: server_lib.Server, clients: Sequence[client_lib.Client], algorithm,
             delays: Delays, rounds: Optional[int] = None,
             max_time: Optional[float] = None) -> Trace:
  """Synchronous rounds; round r lasts as long as the slowest client's job r."""
  if rounds is None and max_time is None:
    raise ValueError('give rounds or max_time')
  initial_loss = algorithms.global_loss(clients, server.weights)
  points, clock, round_num = [], 0.0, 0
  while True:
    round_num += 1
    if rounds is not None and round_num > rounds:
      break
    duration = max(delays(k, round_num) for k in range(len(clients)))
    if max_time is not None and clock + duration > max_time:
      break
    clock += duration
    algorithms.run_round(server, clients, algorithm, round_num=round_num)
    points.append(TracePoint(clock, round_num, round_num * len(clients),
                             algorithms.global_loss(clients, server.weights)))
  return Trace('sync', initial_loss, points, server.weights)


@dataclasses.dataclass
class _Job:
  number: int            # this client's j-th job, counted from 1
  weights: np.ndarray    # the model it started from
  version: int           # server steps when that model was sent


def run_async(*, server: server_lib.Server, clients: Sequence[client_lib.Client], algorithm,
              delays: Delays, buffer_size: int, max_time: float,
              staleness_exponent: float = 0.5) -> Trace:
  """FedBuff until the simulated clock passes `max_time`.

  Arrivals at the same instant are taken in client order, and the clients
  that arrived then restart only after the server has processed them all, so
  a tie of all K clients with B = K is one synchronous round.
  """
  if not 1 <= buffer_size <= len(clients):
    raise ValueError(f'buffer size must be in [1, {len(clients)}] (the number of clients), '
                     f'got {buffer_size}')
  initial_loss = algorithms.global_loss(clients, server.weights)
  jobs, arrivals = {}, []

  def start(k: int, number: int, now: float):
    jobs[k] = _Job(number, server.broadcast(), server.version)
    heapq.heappush(arrivals, (now + delays(k, number), k))

  for k in range(len(clients)):
    start(k, 1, 0.0)
  points, buffer, scales, received = [], [], [], 0
  while arrivals and arrivals[0][0] <= max_time:
    now = arrivals[0][0]
    finished = []
    while arrivals and arrivals[0][0] == now:
      finished.append(heapq.heappop(arrivals)[1])
    for k in finished:  # heap order: ascending client index within a tie
      job = jobs[k]
      buffer.append(algorithm.client_work(clients[k], job.weights, client_index=k,
                                          job=job.number))
      scales.append(staleness_weight(server.version - job.version,
                                     exponent=staleness_exponent))
      received += 1
      if len(buffer) == buffer_size:
        server.step(buffer, scales=scales)
        buffer, scales = [], []
        points.append(TracePoint(now, server.version, received,
                                 algorithms.global_loss(clients, server.weights)))
    for k in finished:
      start(k, jobs[k].number + 1, now)
  return Trace('async', initial_loss, points, server.weights)


@dataclasses.dataclass
class SyncAsyncRace:
  """The synchronous loop and FedBuff racing to one target loss on the same simulated clock."""
  target_loss: float
  sync: Trace
  asynchronous: Trace

  def summary(self) -> dict:
    """Simulated time, server steps and client updates each protocol needed."""
    out = {'target_loss': self.target_loss}
    for trace in (self.sync, self.asynchronous):
      hit = trace.first_reaching(self.target_loss)
      out[trace.protocol] = {
          'time_to_target': hit.time if hit else None,
          'server_steps_to_target': hit.server_steps if hit else None,
          'client_updates_to_target': hit.client_updates if hit else None,
          'final_time': trace.points[-1].time if trace.points else 0.0,
          'final_loss': trace.points[-1].loss if trace.points else trace.initial_loss,
      }
    s, a = out['sync']['time_to_target'], out['async']['time_to_target']
    out['speedup'] = s / a if s is not None and a else None
    return out


def race_sync_async(*, make_server: Callable[[], server_lib.Server],
                    clients: Sequence[client_lib.Client], algorithm, delays: Delays,
                    buffer_size: int, rounds: int, staleness_exponent: float = 0.5,
                    target_loss: Optional[float] = None,
                    target_fraction: float = 0.95) -> SyncAsyncRace:
  """Sync for `rounds` rounds, then async for the same simulated time.

  Args:
    make_server: Returns a fresh server at the shared initial weights.
    target_loss: Loss both must reach. None: the loss after `target_fraction`
      of the decrease the synchronous loop achieved in `rounds` rounds.
  """
  sync = run_sync(server=make_server(), clients=clients, algorithm=algorithm,
                  delays=delays, rounds=rounds)
  if not sync.points:
    raise ValueError('the synchronous loop ran no round')
  if target_loss is None:
    drop = sync.initial_loss - min(p.loss for p in sync.points)
    target_loss = sync.initial_loss - target_fraction * drop
  asynchronous = run_async(server=make_server(), clients=clients, algorithm=algorithm,
                           delays=delays, buffer_size=buffer_size,
                           max_time=sync.points[-1].time,
                           staleness_exponent=staleness_exponent)
  return SyncAsyncRace(target_loss, sync, asynchronous)

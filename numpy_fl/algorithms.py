"""FedSGD and FedAvg: what each client computes in a round, and the synchronous loop.

The client work runs on the clients, `Server.step` on the server, and
`run_rounds` is the Python orchestrator of the synchronous protocol: every
round, every client starts from the same broadcast model and the server waits
for all of them before stepping (the textbook synchronous loop).
"""

import dataclasses
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Optional

import numpy as np

from numpy_fl import client as client_lib
from numpy_fl import server as server_lib


@dataclasses.dataclass(frozen=True)
class FedSGD:
  """Each client sends its full-batch gradient; the server lr is the only step size."""
  name = 'fedsgd'

  def client_work(self, client: client_lib.Client, weights: np.ndarray, *,
                  client_index: int, job: int) -> client_lib.ClientUpdate:
    del client_index, job  # a full-batch gradient involves no randomness
    return client.gradient(weights)


@dataclasses.dataclass(frozen=True)
class FedAvg:
  """Each client runs `epochs` of minibatch SGD at `client_lr` and sends its delta.

  `shuffle_seed=None` visits examples in stored order (what an unshuffled
  `tf.data` pipeline does); otherwise the permutation of client `k` in its
  `j`-th job is drawn from `(shuffle_seed, k, j)`, so it is reproducible and
  independent of how jobs interleave.
  """
  client_lr: float
  epochs: int = 1
  batch_size: Optional[int] = None
  shuffle_seed: Optional[int] = None
  name = 'fedavg'

  def client_work(self, client: client_lib.Client, weights: np.ndarray, *,
                  client_index: int, job: int) -> client_lib.ClientUpdate:
    seed = None
    if self.shuffle_seed is not None:
      seed = np.random.SeedSequence([self.shuffle_seed, client_index, job])
    return client.train(weights, lr=self.client_lr, epochs=self.epochs,
                        batch_size=self.batch_size, shuffle_seed=seed)


def global_loss(clients: Sequence[client_lib.Client], weights: np.ndarray) -> float:
  """Mean loss over the union of all clients' examples (what FL minimizes)."""
  total = sum(c.loss(weights) * c.num_examples for c in clients)
  return total / sum(c.num_examples for c in clients)


def run_round(server: server_lib.Server, clients: Sequence[client_lib.Client],
              algorithm, *, round_num: int) -> np.ndarray:
  """One synchronous round: broadcast, every client works, one server step."""
  weights = server.broadcast()
  updates = [algorithm.client_work(c, weights, client_index=k, job=round_num)
             for k, c in enumerate(clients)]
  return server.step(updates)


@dataclasses.dataclass
class RoundRecord:
  round_num: int
  loss: float      # global loss after the round's step
  seconds: float   # wall time of the round itself (client work + server step)


def run_rounds(server: server_lib.Server, clients: Sequence[client_lib.Client],
               algorithm, *, rounds: int,
               on_round: Optional[Callable[[RoundRecord], None]] = None) -> list[RoundRecord]:
  """`rounds` synchronous rounds; returns the loss and wall time of each."""
  history = []
  for round_num in range(1, rounds + 1):
    started = time.perf_counter()
    run_round(server, clients, algorithm, round_num=round_num)
    seconds = time.perf_counter() - started
    record = RoundRecord(round_num, global_loss(clients, server.weights), seconds)
    history.append(record)
    if on_round is not None:
      on_round(record)
  return history

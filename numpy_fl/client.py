"""A client: its own examples, and the work it does on them each round.

Runs on the client. The data never leaves it; what it sends the server is
either a gradient (FedSGD) or a model update after local training (FedAvg),
together with the number of examples behind it.
"""

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class ClientUpdate:
  """What one client sends back.

  `update` points along the gradient (FedSGD: the gradient itself; FedAvg:
  `initial - trained`, TFF's sign), so the server subtracts it in both cases.
  `num_examples` counts examples processed, as TFF's example weight does.
  """
  update: np.ndarray
  num_examples: int


class Client:
  """Holds `x` [n, d] and `y` [n]; computes gradients and local training."""

  def __init__(self, x, y, *, model, dtype=np.float32, name: str = ''):
    x = np.asarray(x)
    y = np.asarray(y)
    where = f'client {name!r}' if name else 'client'
    if x.ndim != 2:
      raise ValueError(f'{where}: features must be 2-D [examples, features], got shape {x.shape}')
    if y.shape != (len(x),):
      raise ValueError(f'{where}: labels must be 1-D with one per example ({len(x)}), '
                       f'got shape {y.shape}')
    if len(x) == 0:
      raise ValueError(f'{where}: has no examples')
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
      raise ValueError(f'{where}: features and labels must be finite')
    self.name = name
    self.model = model
    self.x = x.astype(dtype)
    self.y = y.astype(dtype)

  @property
  def num_examples(self) -> int:
    return len(self.y)

  @property
  def dtype(self):
    return self.x.dtype

  def loss(self, weights: np.ndarray) -> float:
    return self.model.loss(weights, self.x, self.y)

  def gradient(self, weights: np.ndarray) -> ClientUpdate:
    """FedSGD: the full-batch gradient of the mean loss at `weights`."""
    weights = np.asarray(weights, dtype=self.dtype)
    return ClientUpdate(self.model.gradient(weights, self.x, self.y), self.num_examples)

  def train(self, weights: np.ndarray, *, lr: float, epochs: int = 1,
            batch_size: Optional[int] = None,
            shuffle_seed: Optional[np.random.SeedSequence] = None) -> ClientUpdate:
    """FedAvg: `epochs` passes of minibatch SGD from `weights`.

    Args:
      weights: The broadcast model.
      lr: Client learning rate.
      epochs: Local passes over the data.
      batch_size: Examples per step; None means full batch (one step per
        epoch). The last batch of an epoch may be smaller, as `Dataset.batch`.
      shuffle_seed: If given, each epoch visits the examples in a fresh
        permutation drawn from it; None keeps the stored order.

    Returns:
      `initial - trained` and the examples processed (`epochs * n`).
    """
    if epochs < 1:
      raise ValueError(f'epochs must be at least 1, got {epochs}')
    if batch_size is not None and batch_size < 1:
      raise ValueError(f'batch_size must be positive, got {batch_size}')
    initial = np.asarray(weights, dtype=self.dtype)
    trained = initial.copy()
    n = self.num_examples
    step = n if batch_size is None else batch_size
    rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
    for _ in range(epochs):
      order = np.arange(n) if rng is None else rng.permutation(n)
      for start in range(0, n, step):
        rows = order[start:start + step]
        trained -= lr * self.model.gradient(trained, self.x[rows], self.y[rows])
    return ClientUpdate(initial - trained, epochs * n)

"""The server: holds the model, broadcasts it, averages client updates, steps.

Runs on the server. One round is `broadcast` -> clients -> `step(updates)`:

    w <- w - lr * (1/K) * sum_k u_k                  (weighting='uniform')
    w <- w - lr * sum_k n_k u_k / sum_k n_k          (weighting='num_examples')

with `u_k` a client gradient (FedSGD) or model delta (FedAvg). For FedSGD the
uniform line is the textbook FedSGD formula `w <- w - lr * (1/K) * sum_k grad F_k(w)`.
With momentum `m > 0` the step is TFF's SGDM: `a <- m * a + mean; w <- w - lr * a`.
"""

from collections.abc import Sequence
from typing import Optional

import numpy as np

from numpy_fl import client as client_lib

WEIGHTINGS = ('uniform', 'num_examples')


def aggregate(updates: Sequence[client_lib.ClientUpdate], *, weighting: str,
              scales: Optional[Sequence[float]] = None) -> np.ndarray:
  """Mean of client updates: uniform 1/K or weighted by example counts.

  Args:
    updates: One per client, in a fixed order (the order sets float rounding).
    weighting: `'uniform'` or `'num_examples'`.
    scales: Optional per-update factors applied on top of the mean's weights
      but not renormalized (asynchronous staleness discounts: a stale update
      counts less, it does not make the others count more).
  """
  if not updates:
    raise ValueError('cannot aggregate zero client updates')
  if weighting not in WEIGHTINGS:
    raise ValueError(f'unknown weighting {weighting!r}; expected one of {", ".join(WEIGHTINGS)}')
  dtype = updates[0].update.dtype
  if weighting == 'uniform':
    weights = np.ones(len(updates), dtype=dtype)
  else:
    weights = np.array([u.num_examples for u in updates], dtype=dtype)
  total_weight = np.sum(weights)
  if total_weight <= 0:
    raise ValueError('client weights sum to zero; no update to average')
  if scales is not None:
    if len(scales) != len(updates):
      raise ValueError(f'{len(scales)} scales for {len(updates)} updates')
    weights = weights * np.asarray(scales, dtype=dtype)
  total = np.zeros_like(updates[0].update)
  for weight, u in zip(weights, updates):
    total += weight * u.update
  return total / total_weight


class Server:
  """Holds the global weights and applies averaged client updates to them."""

  def __init__(self, initial_weights: np.ndarray, *, lr: float, momentum: float = 0.0,
               weighting: str = 'uniform'):
    if weighting not in WEIGHTINGS:
      raise ValueError(f'unknown weighting {weighting!r}; expected one of {", ".join(WEIGHTINGS)}')
    if not 0.0 <= momentum < 1.0:
      raise ValueError(f'momentum must be in [0, 1), got {momentum}')
    self._weights = np.array(initial_weights, copy=True)
    self._accumulator = np.zeros_like(self._weights)
    self.lr = lr
    self.momentum = momentum
    self.weighting = weighting
    self.version = 0  # server steps taken; asynchronous staleness is measured in it

  @property
  def weights(self) -> np.ndarray:
    return self._weights.copy()

  def broadcast(self) -> np.ndarray:
    """The model sent to clients: a copy, so no client can change the server's."""
    return self._weights.copy()

  def step(self, updates: Sequence[client_lib.ClientUpdate], *,
           scales: Optional[Sequence[float]] = None) -> np.ndarray:
    """Aggregates `updates` and applies one server SGD(M) step; returns the mean."""
    mean = aggregate(updates, weighting=self.weighting, scales=scales)
    self.apply(mean)
    return mean

  def apply(self, mean_update: np.ndarray):
    if self.momentum > 0:
      self._accumulator = self.momentum * self._accumulator + mean_update
      self._weights = self._weights - self.lr * self._accumulator
    else:
      self._weights = self._weights - self.lr * mean_update
    self.version += 1

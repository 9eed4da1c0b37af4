"""The trained model as NumPy arrays, and on-device reconstruction of a user.

Used on the Python side after training (evaluation, ranking) and on a user's
device (`recommend`): the global item parameters are what the server
released; a user's factors are rebuilt from that user's own ratings with the
same procedure the federated clients run (plain SGD from zero for
`recon_epochs` passes over the ratings in `batch_size` batches, per-rating L2),
so they match what TFF's `build_fed_recon_eval` reconstructs.
"""

import dataclasses
import json
from typing import Optional, Sequence

import numpy as np

from tff_common import files

# Every MovieLens release rates within [0.5, 5]; predictions shown are clipped to it.
MIN_RATING, MAX_RATING = 0.5, 5.0


@dataclasses.dataclass
class MFParams:
  item_factors: np.ndarray    # [num_items, dim]
  item_bias: np.ndarray       # [num_items]
  offset: float
  l2: float
  # Only for models with a global user table (FedAvg, centralized); rows in
  # the order of the training users.
  user_factors: Optional[np.ndarray] = None
  user_bias: Optional[np.ndarray] = None

  @property
  def num_items(self) -> int:
    return self.item_factors.shape[0]

  def scores(self, p: np.ndarray, b_u: np.ndarray, items: Optional[np.ndarray] = None) -> np.ndarray:
    """Predicted ratings: users (rows of p) x items (all when None)."""
    q = self.item_factors if items is None else self.item_factors[items]
    b_i = self.item_bias if items is None else self.item_bias[items]
    return self.offset + b_u[..., None] + b_i + np.atleast_2d(p) @ q.T


def from_weights(weights: Sequence[np.ndarray], layers: Sequence[str], *, l2: float) -> MFParams:
  """MFParams from trainable weights, named by `model.variable_layers` order."""
  by_name = dict(zip(layers, (np.asarray(w) for w in weights)))
  user_factors = by_name.get('user_factors')
  user_bias = by_name.get('user_bias')
  return MFParams(
      item_factors=by_name['item_factors'].astype(np.float32),
      item_bias=by_name['item_bias'].reshape(-1).astype(np.float32),
      offset=float(by_name['offset']),
      l2=l2,
      user_factors=None if user_factors is None else user_factors.astype(np.float32),
      user_bias=None if user_bias is None else user_bias.reshape(-1).astype(np.float32))


def save(params: MFParams, path: str, **metadata):
  arrays = {k: v for k, v in dataclasses.asdict(params).items()
            if isinstance(v, np.ndarray)}
  arrays['offset'] = np.float32(params.offset)
  arrays['l2'] = np.float32(params.l2)
  arrays['metadata'] = np.array(json.dumps(metadata))
  with files.atomic_path(path) as tmp:
    np.savez(tmp, **arrays)


def load(path: str) -> tuple[MFParams, dict]:
  with np.load(path) as z:
    params = MFParams(
        item_factors=z['item_factors'], item_bias=z['item_bias'],
        offset=float(z['offset']), l2=float(z['l2']),
        user_factors=z['user_factors'] if 'user_factors' in z else None,
        user_bias=z['user_bias'] if 'user_bias' in z else None)
    metadata = json.loads(str(z['metadata']))
  return params, metadata


def reconstruct(params: MFParams, users: Sequence[tuple[np.ndarray, np.ndarray]], *,
                lr: float, epochs: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Rebuilds user factors and biases from each user's (items, ratings).

  All users are advanced together, one SGD step each per iteration (a user
  whose passes are done stops moving), which is the per-device procedure
  vectorized across devices.

  Returns:
    (p [num_users, dim], b_u [num_users]); zeros for a user without ratings.
  """
  dim = params.item_factors.shape[1]
  n_users = len(users)
  p = np.zeros((n_users, dim), np.float32)
  b_u = np.zeros(n_users, np.float32)
  if n_users == 0:
    return p, b_u
  counts = np.array([len(r) for _, r in users])
  batches = -(-counts // batch_size)      # ceil
  steps = batches * epochs
  width = max(int(counts.max()), 1)
  items = np.zeros((n_users, width), np.int64)
  ratings = np.zeros((n_users, width), np.float32)
  for k, (it, r) in enumerate(users):
    items[k, :len(it)] = it
    ratings[k, :len(r)] = r
  columns = np.arange(batch_size)
  rows = np.arange(n_users)[:, None]
  l2 = np.float32(params.l2)
  lr = np.float32(lr)
  for step in range(int(steps.max()) if len(steps) else 0):
    active = step < steps
    start = (step % np.maximum(batches, 1)) * batch_size
    position = start[:, None] + columns
    valid = (position < counts[:, None]) & active[:, None]
    position = np.minimum(position, width - 1)
    it = items[rows, position]
    q = params.item_factors[it]                       # [U, B, d]
    pred = (params.offset + b_u[:, None] + params.item_bias[it] +
            np.einsum('ud,ubd->ub', p, q))
    size = np.maximum(valid.sum(1), 1).astype(np.float32)
    # d/dx of mean_b[(r - pred)^2 + l2 (|p|^2 + b_u^2 + ...)] over the batch.
    error = np.where(valid, ratings[rows, position] - pred, 0.0)
    grad_p = -2.0 * np.einsum('ub,ubd->ud', error, q) / size[:, None] + 2 * l2 * p
    grad_b = -2.0 * error.sum(1) / size + 2 * l2 * b_u
    p = np.where(active[:, None], p - lr * grad_p, p).astype(np.float32)
    b_u = np.where(active, b_u - lr * grad_b, b_u).astype(np.float32)
  return p, b_u

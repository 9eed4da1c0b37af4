"""The trained model as NumPy arrays, and on-device reconstruction of a user.

Used on the Python side after training (evaluation, ranking) and on a user's
device (`recommend`): the global item parameters are what the server
released; a user's factors are rebuilt from that user's own ratings with the
same procedure the federated clients run (plain SGD from zero for
`recon_epochs` passes over the ratings in `batch_size` batches, per-rating L2),
so they match what TFF's `build_fed_recon_eval` reconstructs.

Implicit feedback: a device may add imputed negatives to its ratings
(`with_negatives`): items it has NOT rated, drawn uniformly from the public
item vocabulary the server broadcasts, trained towards rating
`NEGATIVE_TARGET` with a small weight. They are sampled and used on the
device only; nothing about them (and nothing new) leaves the device.
"""

import dataclasses
import json
from typing import Optional, Sequence

import numpy as np

from tff_common import files

# Every MovieLens release rates within [0.5, 5]; predictions shown are clipped to it.
MIN_RATING, MAX_RATING = 0.5, 5.0
# The target of an imputed negative (same as model.NEGATIVE_TARGET).
NEGATIVE_TARGET = 0.0
# Seeds of reconstruction-time negatives: (seed, NEGATIVES_TAG, user); training
# rounds use (seed, round, user, NEGATIVES_TAG).
NEGATIVES_TAG = 7919


def negatives_rng(seed: int, user: int, round_num: Optional[int] = None) -> np.random.Generator:
  """The generator of one user's negatives: a pure function of (seed, [round,] user)."""
  if round_num is None:
    return np.random.default_rng([seed, NEGATIVES_TAG, int(user)])
  return np.random.default_rng([seed, int(round_num), int(user), NEGATIVES_TAG])


def sample_negatives(num_items: int, rated: np.ndarray, count: int,
                     rng: np.random.Generator) -> np.ndarray:
  """`count` distinct items of the vocabulary not in `rated` (fewer if it runs out)."""
  if count <= 0:
    return np.zeros(0, np.int32)
  mask = np.ones(num_items, bool)
  mask[np.asarray(rated, np.int64)] = False
  candidates = np.flatnonzero(mask)
  count = min(count, len(candidates))
  return np.sort(rng.choice(candidates, size=count, replace=False)).astype(np.int32)


def with_negatives(items: np.ndarray, ratings: np.ndarray, *, num_items: int,
                   negatives_per_rating: float, negative_weight: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """A user's examples: their ratings and round(k * #ratings) imputed negatives, mixed.

  Returns:
    (items, targets, weights, is_rating): weight 1 for a rating,
    `negative_weight` for a negative.
  """
  items = np.asarray(items, np.int32)
  ratings = np.asarray(ratings, np.float32)
  count = int(round(negatives_per_rating * len(items))) if negative_weight > 0 else 0
  negatives = sample_negatives(num_items, items, count, rng)
  n = len(negatives)
  if n == 0:
    ones = np.ones(len(items), np.float32)
    return items, ratings, ones, ones
  # Interleaved (a fixed permutation from the same generator): SGD over
  # ratings first and negatives last would end each pass pulled towards 0.
  order = rng.permutation(len(items) + n)
  return (np.concatenate([items, negatives]).astype(np.int32)[order],
          np.concatenate([ratings, np.full(n, NEGATIVE_TARGET, np.float32)])[order],
          np.concatenate([np.ones(len(items), np.float32),
                          np.full(n, negative_weight, np.float32)])[order],
          np.concatenate([np.ones(len(items), np.float32), np.zeros(n, np.float32)])[order])


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


def reconstruct(params: MFParams, users: Sequence[tuple], *,
                lr: float, epochs: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Rebuilds user factors and biases from each user's (items, targets[, weights, rated]).

  Weights (1 when absent) scale each example's squared error and penalty, as
  `model.RatingLoss` does; an imputed negative (rated 0) is predicted without
  the user bias b_u, as in `model.MatrixFactorization`.

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
  counts = np.array([len(u[1]) for u in users])
  batches = -(-counts // batch_size)      # ceil
  steps = batches * epochs
  width = max(int(counts.max()), 1)
  items = np.zeros((n_users, width), np.int64)
  ratings = np.zeros((n_users, width), np.float32)
  weights = np.zeros((n_users, width), np.float32)
  rated = np.zeros((n_users, width), np.float32)
  for k, user in enumerate(users):
    it, r = user[0], user[1]
    items[k, :len(it)] = it
    ratings[k, :len(r)] = r
    weights[k, :len(r)] = user[2] if len(user) > 2 else 1.0
    rated[k, :len(r)] = user[3] if len(user) > 3 else 1.0
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
    m = rated[rows, position]
    user_bias = m * b_u[:, None]
    pred = (params.offset + user_bias + params.item_bias[it] +
            np.einsum('ud,ubd->ub', p, q))
    size = np.maximum(valid.sum(1), 1).astype(np.float32)
    # d/dx of mean_b[w ((r - pred)^2 + l2 (|p|^2 + b_u^2 + ...))] over the batch.
    w = np.where(valid, weights[rows, position], 0.0).astype(np.float32)
    error = np.where(valid, ratings[rows, position] - pred, 0.0) * w
    mean_w = (w.sum(1) / size).astype(np.float32)
    grad_p = (-2.0 * np.einsum('ub,ubd->ud', error, q) / size[:, None] +
              2 * l2 * mean_w[:, None] * p)
    # Penalty l2 * (m b_u)^2 of each example: b_u is penalized by ratings only.
    w_rated = (w * m).sum(1) / size
    grad_b = -2.0 * (error * m).sum(1) / size + 2 * l2 * w_rated * b_u
    p = np.where(active[:, None], p - lr * grad_p, p).astype(np.float32)
    b_u = np.where(active, b_u - lr * grad_b, b_u).astype(np.float32)
  return p, b_u

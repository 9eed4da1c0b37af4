"""The trained model as NumPy arrays, and on-device reconstruction of a user.

Used on the Python side after training (evaluation, ranking) and on a user's
device (`recommend`): the global item parameters are what the server
released; a user's parameters are rebuilt from that user's own examples with
the same procedure the federated clients run (plain SGD from zero for
`recon_epochs` passes in `batch_size` batches, the loss of `model.RatingLoss`),
so they match what TFF's `build_fed_recon_eval` reconstructs.

A user's examples are their ratings plus, for the implicit head, items they
have NOT rated, drawn on the device uniformly from the public item vocabulary
the server broadcasts (`with_negatives`). They are sampled and used on the
device only; nothing about them (and nothing new) leaves the device.
"""

import dataclasses
import json
from typing import NamedTuple, Optional, Sequence

import numpy as np

from tff_common import files
from tff_rec import ranking

# Every MovieLens release rates within [0.5, 5]; predictions shown are clipped to it.
MIN_RATING, MAX_RATING = 0.5, 5.0
# Seeds of reconstruction-time negatives: (seed, NEGATIVES_TAG, user); training
# rounds use (seed, round, user, NEGATIVES_TAG).
NEGATIVES_TAG = 7919


def negatives_rng(seed: int, user: int, round_num: Optional[int] = None) -> np.random.Generator:
  """The generator of one user's negatives: a pure function of (seed, [round,] user)."""
  if round_num is None:
    return np.random.default_rng([seed, NEGATIVES_TAG, int(user)])
  return np.random.default_rng([seed, int(round_num), int(user), NEGATIVES_TAG])


def with_negatives(items: np.ndarray, ratings: np.ndarray, *, num_items: int,
                   negatives_per_rating: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A user's examples: their ratings and round(k * #ratings) unrated items, mixed.

  Returns:
    (items, targets, is_rating): an unrated item has target 0 (unused) and
    is_rating 0.
  """
  items = np.asarray(items, np.int32)
  ratings = np.asarray(ratings, np.float32)
  count = int(round(negatives_per_rating * len(items)))
  negatives = ranking.sample_negatives(num_items, items, count=count, rng=rng)
  n = len(negatives)
  if n == 0:
    return items, ratings, np.ones(len(items), np.float32)
  # Interleaved (a fixed permutation from the same generator) so that every
  # batch holds ratings and unrated items in about the same proportion.
  order = rng.permutation(len(items) + n)
  return (np.concatenate([items, negatives]).astype(np.int32)[order],
          np.concatenate([ratings, np.zeros(n, np.float32)])[order],
          np.concatenate([np.ones(len(items), np.float32), np.zeros(n, np.float32)])[order])


class UserFactors(NamedTuple):
  """Users' own parameters, one row per user."""
  p: np.ndarray                    # [users, dim] rating factors
  b_u: np.ndarray                  # [users] rating bias
  s: Optional[np.ndarray] = None   # [users, dim] implicit factors (implicit models)


@dataclasses.dataclass
class MFParams:
  item_factors: np.ndarray    # [num_items, dim]
  item_bias: np.ndarray       # [num_items]
  offset: float
  l2: float
  implicit_l2: float = 0.0
  # The implicit head (absent in rating-only models).
  implicit_item_factors: Optional[np.ndarray] = None   # [num_items, dim]
  implicit_item_bias: Optional[np.ndarray] = None      # [num_items]
  # Only for models with a global user table (FedAvg, centralized); rows in
  # the order of the training users.
  user_factors: Optional[np.ndarray] = None
  user_bias: Optional[np.ndarray] = None
  implicit_user_factors: Optional[np.ndarray] = None

  @property
  def num_items(self) -> int:
    return self.item_factors.shape[0]

  @property
  def implicit(self) -> bool:
    return self.implicit_item_factors is not None

  def table(self) -> Optional[UserFactors]:
    """The training users' parameters, when the model holds them."""
    if self.user_factors is None:
      return None
    return UserFactors(self.user_factors, self.user_bias, self.implicit_user_factors)

  def scores(self, p: np.ndarray, b_u: np.ndarray, items: Optional[np.ndarray] = None) -> np.ndarray:
    """Predicted ratings: users (rows of p) x items (all when None)."""
    q = self.item_factors if items is None else self.item_factors[items]
    b_i = self.item_bias if items is None else self.item_bias[items]
    return self.offset + np.asarray(b_u)[..., None] + b_i + np.atleast_2d(p) @ q.T

  def rated_logits(self, s: np.ndarray, items: Optional[np.ndarray] = None) -> np.ndarray:
    """Implicit head: log-odds that users (rows of s) rate the items (all when None)."""
    t = self.implicit_item_factors if items is None else self.implicit_item_factors[items]
    c = self.implicit_item_bias if items is None else self.implicit_item_bias[items]
    return c + np.atleast_2d(s) @ t.T

  def ranking_scores(self, user: UserFactors, k: int) -> np.ndarray:
    """What top-N lists of user row k are ranked by, over every item: the
    implicit head when the model has one, else the predicted rating."""
    if self.implicit:
      return self.rated_logits(user.s[k])[0]
    return self.scores(user.p[k], user.b_u[k:k + 1])[0]


def from_weights(weights: Sequence[np.ndarray], layers: Sequence[str], *, l2: float,
                 implicit_l2: float = 0.0) -> MFParams:
  """MFParams from trainable weights, named by `model.variable_layers` order."""
  by_name = dict(zip(layers, (np.asarray(w) for w in weights)))

  def get(name, flat=False):
    value = by_name.get(name)
    if value is None:
      return None
    return (value.reshape(-1) if flat else value).astype(np.float32)

  return MFParams(
      item_factors=get('item_factors'), item_bias=get('item_bias', flat=True),
      offset=float(by_name['offset']), l2=l2, implicit_l2=implicit_l2,
      implicit_item_factors=get('implicit_item_factors'),
      implicit_item_bias=get('implicit_item_bias', flat=True),
      user_factors=get('user_factors'), user_bias=get('user_bias', flat=True),
      implicit_user_factors=get('implicit_user_factors'))


_ARRAYS = ('item_factors', 'item_bias', 'implicit_item_factors', 'implicit_item_bias',
           'user_factors', 'user_bias', 'implicit_user_factors')


def save(params: MFParams, path: str, **metadata):
  arrays = {k: getattr(params, k) for k in _ARRAYS if getattr(params, k) is not None}
  arrays['offset'] = np.float32(params.offset)
  arrays['l2'] = np.float32(params.l2)
  arrays['implicit_l2'] = np.float32(params.implicit_l2)
  arrays['metadata'] = np.array(json.dumps(metadata))
  with files.atomic_path(path) as tmp:
    np.savez(tmp, **arrays)


def load(path: str) -> tuple[MFParams, dict]:
  with np.load(path) as z:
    params = MFParams(offset=float(z['offset']), l2=float(z['l2']),
                      implicit_l2=float(z['implicit_l2']) if 'implicit_l2' in z else 0.0,
                      **{k: z[k] for k in _ARRAYS if k in z})
    metadata = json.loads(str(z['metadata']))
  return params, metadata


def _sigmoid(z):
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def reconstruct(params: MFParams, users: Sequence[tuple], *, lr: float, epochs: int,
                batch_size: int, implicit_weight: float = 0.0) -> UserFactors:
  """Rebuilds each user's parameters from their (items, targets[, is_rating]).

  The loss is `model.RatingLoss`'s: per batch, the mean over its ratings of
  the squared error plus penalty (rating head), plus `implicit_weight` times
  the mean over all its examples of the logistic loss of rated (1) vs
  unrated (0) plus penalty (implicit head). `is_rating` defaults to all ones.

  All users are advanced together, one SGD step each per iteration (a user
  whose passes are done stops moving), which is the per-device procedure
  vectorized across devices.

  Returns:
    UserFactors; zeros for a user without examples, `s` None for a rating-only model.
  """
  dim = params.item_factors.shape[1]
  n_users = len(users)
  p = np.zeros((n_users, dim), np.float32)
  b_u = np.zeros(n_users, np.float32)
  s = np.zeros((n_users, dim), np.float32) if params.implicit else None
  if n_users == 0:
    return UserFactors(p, b_u, s)
  counts = np.array([len(u[1]) for u in users])
  batches = -(-counts // batch_size)      # ceil
  steps = batches * epochs
  width = max(int(counts.max()), 1)
  items = np.zeros((n_users, width), np.int64)
  ratings = np.zeros((n_users, width), np.float32)
  rated = np.zeros((n_users, width), np.float32)
  for k, user in enumerate(users):
    it, r = user[0], user[1]
    items[k, :len(it)] = it
    ratings[k, :len(r)] = r
    rated[k, :len(r)] = user[2] if len(user) > 2 else 1.0
  columns = np.arange(batch_size)
  l2 = np.float32(params.l2)
  implicit_l2 = np.float32(params.implicit_l2)
  lr = np.float32(lr)
  w_implicit = np.float32(implicit_weight)
  for step in range(int(steps.max()) if len(steps) else 0):
    # Only users still stepping are computed (a few heavy raters set the
    # step count; most users are done long before).
    u = np.flatnonzero(step < steps)
    rows = u[:, None]
    start = (step % batches[u]) * batch_size
    position = start[:, None] + columns
    valid = position < counts[u][:, None]
    position = np.minimum(position, width - 1)
    it = items[rows, position]
    m = np.where(valid, rated[rows, position], 0.0).astype(np.float32)
    # Rating head: d/dx of mean over the batch's ratings of (r - pred)^2 + penalty.
    n_rated = m.sum(1)
    per_rating = (1.0 / np.maximum(n_rated, 1.0)).astype(np.float32)
    q = params.item_factors[it]                       # [U, B, d]
    pu, bu = p[u], b_u[u]
    pred = params.offset + bu[:, None] + params.item_bias[it] + np.einsum('ud,ubd->ub', pu, q)
    error = (ratings[rows, position] - pred) * m
    has_ratings = (n_rated > 0).astype(np.float32)
    grad_p = (-2.0 * np.einsum('ub,ubd->ud', error, q) * per_rating[:, None] +
              2 * l2 * has_ratings[:, None] * pu)
    grad_b = -2.0 * error.sum(1) * per_rating + 2 * l2 * has_ratings * bu
    if s is not None and implicit_weight:
      # Implicit head: w * d/ds of mean over the batch of BCE + implicit_l2 (|s|^2 + |t|^2).
      su = s[u]
      size = valid.sum(1).astype(np.float32)
      t = params.implicit_item_factors[it]
      logits = params.implicit_item_bias[it] + np.einsum('ud,ubd->ub', su, t)
      residual = np.where(valid, _sigmoid(logits) - m, 0.0).astype(np.float32)
      grad_s = w_implicit * (np.einsum('ub,ubd->ud', residual, t) / size[:, None] +
                             2 * implicit_l2 * su)
      s[u] = su - lr * grad_s
    p[u] = pu - lr * grad_p
    b_u[u] = bu - lr * grad_b
  return UserFactors(p, b_u, s)

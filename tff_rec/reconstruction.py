"""On-device reconstruction: a user's own parameters rebuilt from their own examples.

Runs on a user's device (and, vectorized over users, in the evaluation): it
needs only the global item parameters the server released and the user's
ratings, and sends nothing back. The procedure is the one TFF's Federated
Reconstruction clients run (plain SGD from zero for `epochs` passes in
`batch_size` batches, the loss of `model.RatingLoss`), so the parameters
match what `build_fed_recon_eval` reconstructs.

A user's examples are their ratings plus, for the implicit head, items they
have NOT rated, drawn on the device uniformly from the public item vocabulary
the server broadcasts (`with_negatives`). They are sampled and used on the
device only; nothing about them (and nothing new) leaves the device.
"""

import dataclasses
from collections.abc import Sequence
from typing import Optional

import numpy as np

from tff_rec import params as params_lib
from tff_rec import ranking

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


@dataclasses.dataclass(frozen=True)
class ReconConfig:
  """How a device rebuilds its user parameters: the learning rate, passes and
  batch size of training's reconstruction step.

  With `negatives_per_rating` > 0 (models with the implicit head) the device
  adds items it has not rated, sampled from the vocabulary, to its ratings,
  as in training; unlike training (fresh draws and a shuffle every round)
  the draw is fixed by (seed, user) and the examples are not shuffled, so an
  evaluation is repeatable.
  """
  lr: float
  epochs: int
  batch_size: int             # examples (ratings and unrated items) per batch
  negatives_per_rating: float = 0.0
  implicit_weight: float = 0.0
  seed: int = 0

  def examples(self, num_items: int, user: int, items: np.ndarray,
               ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, targets, is_rating) one device reconstructs from."""
    return with_negatives(
        items, ratings, num_items=num_items, negatives_per_rating=self.negatives_per_rating,
        rng=negatives_rng(self.seed, user))

  def reconstruct(self, params: params_lib.MFParams, users) -> params_lib.UserFactors:
    """Each device's parameters, rebuilt from its `examples`."""
    return reconstruct(params, users, lr=self.lr, epochs=self.epochs,
                                  batch_size=self.batch_size,
                                  implicit_weight=self.implicit_weight)


def reconstruct_part(params: params_lib.MFParams, part, recon: ReconConfig) -> params_lib.UserFactors:
  """Every user of `part` (a `split.UserRatings`), rebuilt from their own examples."""
  return recon.reconstruct(params, [
      recon.examples(params.num_items, int(part.users[k]), part.items_of(k),
                     part.ratings_of(k)) for k in range(len(part))])


def _sigmoid(z):
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def reconstruct(params: params_lib.MFParams, users: Sequence[tuple], *, lr: float, epochs: int,
                batch_size: int, implicit_weight: float = 0.0) -> params_lib.UserFactors:
  """Rebuilds each user's parameters from their (items, targets[, is_rating]).

  The loss is `model.RatingLoss`'s: per batch, the mean over its ratings of
  the squared error plus penalty (rating head), plus `implicit_weight` times
  the mean over all its examples of the logistic loss of rated (1) vs
  unrated (0) plus penalty (implicit head). `is_rating` defaults to all ones.

  All users are advanced together, one SGD step each per iteration (a user
  whose passes are done stops moving), which is the per-device procedure
  vectorized across devices.

  Returns:
    params_lib.UserFactors; zeros for a user without examples, `s` None for a rating-only model.
  """
  dim = params.item_factors.shape[1]
  n_users = len(users)
  p = np.zeros((n_users, dim), np.float32)
  b_u = np.zeros(n_users, np.float32)
  s = np.zeros((n_users, dim), np.float32) if params.implicit else None
  if n_users == 0:
    return params_lib.UserFactors(p, b_u, s)
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
  return params_lib.UserFactors(p, b_u, s)

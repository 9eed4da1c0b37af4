"""Personalization on the device: what a user's device does after training, beyond
FedRecon's reconstruction, with every parameter it learns kept on the device.

Each method runs where the user's ratings are, from the global parameters the
server released and the user's own examples (their train ratings and the unrated
items the device samples, `reconstruction.with_negatives`). It works on copies:
the released parameters are not changed, and nothing it learns leaves the device.

    budget    the device's own reconstruction budget: it reconstructs `budget_draws`
              times, each from its ratings and a fresh draw of unrated items, with
              `budget_epochs` passes at step `budget_lr` (default: training's), and
              keeps the mean of its user parameters. Training reconstructs once per
              round from one small draw (3 unrated items per rating) under a time
              limit; the one draw's noise is what the mean removes (more unrated items
              per rating in a single draw would change the rated/unrated balance the
              item parameters were trained at: measured worse), and a device building
              its own list has time for it.
    finetune  PFedRec-style: after the usual reconstruction, the device trains its user
              parameters together with a local copy of the item parameters of the items
              in its examples (both heads' factors and biases), `finetune_epochs` passes
              at `finetune_lr` with the training loss (`model.RatingLoss`). Items it has
              no example of keep the released values.

`PersonalizeConfig` holds the methods chosen (`--personalize`, of tff_rec.evaluate
and tff_rec.recommend) and their settings. Their defaults were chosen on
`validation_split`: a slice of each training user's train ratings held out of the
device's examples, never on test ratings.

Pure NumPy, like `reconstruction`: it loads without TensorFlow.
"""

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple
from typing import Optional

import numpy as np

from tff_common import checks
from tff_rec import params as params_lib
from tff_rec import reconstruction
from tff_rec import split as split_lib

METHODS = ('budget', 'finetune')
# `--personalize=none` (the default): the report's models as trained.
NONE = 'none'


@dataclasses.dataclass(frozen=True)
class PersonalizeConfig:
  """The device-side methods to evaluate (`personalize`, in `METHODS`) and their settings."""
  personalize: tuple = ()
  budget_draws: int = 16
  budget_epochs: Optional[int] = None   # None: the model's own (training's recon_epochs)
  budget_lr: Optional[float] = None     # None: the model's own (training's recon_lr)
  finetune_epochs: int = 1
  finetune_lr: float = 0.03

  def __post_init__(self):
    # A flag gives a list of names; 'none' (or nothing) means no method.
    names = tuple(str(n).strip() for n in (self.personalize or ()) if str(n).strip())
    object.__setattr__(self, 'personalize', () if names == (NONE,) else names)

  def check(self):
    """Raises `errors.InputError` naming the first flag out of range."""
    for name in self.personalize:
      checks.one_of('personalize', name, METHODS + (NONE,))
      if name == NONE:
        checks.fail('personalize', ','.join(self.personalize),
                    f'{NONE}, or a comma list of {", ".join(METHODS)}')
    if len(set(self.personalize)) != len(self.personalize):
      checks.fail('personalize', ','.join(self.personalize), 'each method at most once')
    checks.at_least('budget_draws', self.budget_draws, 1)
    checks.optional_at_least('budget_epochs', self.budget_epochs, 1)
    if self.budget_lr is not None:
      checks.positive('budget_lr', self.budget_lr)
    checks.at_least('finetune_epochs', self.finetune_epochs, 1)
    checks.positive('finetune_lr', self.finetune_lr)

  def budget_recon(self, recon: reconstruction.ReconConfig) -> reconstruction.ReconConfig:
    """`recon` with the device's own budget (method `budget`)."""
    return dataclasses.replace(
        recon, epochs=recon.epochs if self.budget_epochs is None else self.budget_epochs,
        lr=recon.lr if self.budget_lr is None else self.budget_lr)


# The default: no method, default settings.
DEFAULT = PersonalizeConfig()


class ItemCopy(NamedTuple):
  """A device's local copy of some items' parameters (method `finetune`)."""
  items: np.ndarray                                  # [n] item indices, sorted
  item_factors: np.ndarray                           # [n, dim]
  item_bias: np.ndarray                              # [n]
  implicit_item_factors: Optional[np.ndarray] = None
  implicit_item_bias: Optional[np.ndarray] = None


@dataclasses.dataclass
class DeviceModels:
  """What each device of a group ranks and predicts with: the released parameters,
  its own user parameters (row k) and, after `finetune`, its own copy of some items'."""
  params: params_lib.MFParams
  users: params_lib.UserFactors
  copies: Optional[list] = None   # per user: ItemCopy or None

  def _copy(self, k: int) -> Optional[ItemCopy]:
    return None if self.copies is None else self.copies[k]

  def scores(self, k: int, items: Optional[np.ndarray] = None) -> np.ndarray:
    """Predicted ratings of device k for `items` (all when None)."""
    items = np.arange(self.params.num_items) if items is None else np.asarray(items, np.int64)
    q = self.params.item_factors[items]
    b_i = self.params.item_bias[items]
    copy = self._copy(k)
    if copy is not None and len(copy.items):
      at, own = _positions(copy.items, items)
      q = q.copy()
      b_i = b_i.copy()
      q[own] = copy.item_factors[at[own]]
      b_i[own] = copy.item_bias[at[own]]
    return self.params.offset + self.users.b_u[k] + b_i + q @ self.users.p[k]

  def ranking_scores(self, k: int) -> np.ndarray:
    """What device k ranks every item by (`MFParams.ranking_scores`, with its copies)."""
    copy = self._copy(k)
    if not self.params.implicit:
      return self.scores(k)
    scores = self.params.rated_logits(self.users.s[k])[0]
    if copy is not None and len(copy.items):
      scores[copy.items] = (copy.implicit_item_bias +
                            copy.implicit_item_factors @ self.users.s[k])
    return scores

  def train_loss(self, k: int, examples: tuple, implicit_weight: float) -> float:
    """Device k's training loss on all its `examples` as one batch (`model.RatingLoss`)."""
    items, targets, is_rating = (np.asarray(a) for a in examples)
    rated = is_rating > 0
    params, users = self.params, self.users
    loss = 0.0
    if rated.any():
      q, b_i = self._rows(k, items[rated], 'item_factors', 'item_bias')
      error = targets[rated] - self.scores(k, items[rated])
      penalty = params.l2 * (users.p[k] @ users.p[k] + users.b_u[k] ** 2 +
                             (q * q).sum(1) + b_i ** 2)
      loss += float(np.mean(error ** 2 + penalty))
    if params.implicit and implicit_weight:
      t, c = self._rows(k, items, 'implicit_item_factors', 'implicit_item_bias')
      logits = c + t @ users.s[k]
      bce = np.logaddexp(0.0, logits) - is_rating * logits
      penalty = params.implicit_l2 * (users.s[k] @ users.s[k] + (t * t).sum(1))
      loss += implicit_weight * float(np.mean(bce + penalty))
    return loss

  def _rows(self, k, items, factors_name, bias_name):
    factors = getattr(self.params, factors_name)[items].copy()
    bias = getattr(self.params, bias_name)[items].copy()
    copy = self._copy(k)
    if copy is not None and len(copy.items):
      at, own = _positions(copy.items, items)
      factors[own] = getattr(copy, factors_name)[at[own]]
      bias[own] = getattr(copy, bias_name)[at[own]]
    return factors, bias


def _positions(sorted_items: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(index into sorted_items, whether it is there) of each of `items`."""
  at = np.minimum(np.searchsorted(sorted_items, items), len(sorted_items) - 1)
  return at, sorted_items[at] == items


def _sigmoid(z):
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def finetune_one(params: params_lib.MFParams, examples: tuple, user: tuple, *, lr: float,
                 epochs: int, batch_size: int,
                 implicit_weight: float) -> tuple[tuple, ItemCopy]:
  """One device's joint SGD on its user parameters and its copy of its items' parameters.

  Args:
    params: The released parameters (not changed).
    examples: (items, targets, is_rating), in the order reconstruction used.
    user: (p, b_u, s) the device starts from (its reconstruction); s None
      for a rating-only model.
    lr, epochs, batch_size, implicit_weight: plain SGD on `model.RatingLoss`,
      batches in order, as in reconstruction.

  Returns:
    ((p, b_u, s), ItemCopy of the items in `examples`).
  """
  items, targets, is_rating = (np.asarray(a) for a in examples)
  own = np.unique(items).astype(np.int64)
  position = np.searchsorted(own, items)
  q = params.item_factors[own].astype(np.float32).copy()
  b_i = params.item_bias[own].astype(np.float32).copy()
  p = np.array(user[0], np.float32)
  b_u = np.float32(user[1])
  implicit = params.implicit and implicit_weight > 0
  s = None if user[2] is None else np.array(user[2], np.float32)
  t = c = None
  if params.implicit:
    t = params.implicit_item_factors[own].astype(np.float32).copy()
    c = params.implicit_item_bias[own].astype(np.float32).copy()
  l2, implicit_l2, w = (np.float32(v) for v in (params.l2, params.implicit_l2, implicit_weight))
  lr = np.float32(lr)
  for _ in range(epochs):
    for start in range(0, len(items), batch_size):
      at = position[start:start + batch_size]
      m = is_rating[start:start + batch_size].astype(np.float32)
      n_rated = m.sum()
      per_rating = np.float32(1.0 / max(n_rated, 1.0))
      has_ratings = np.float32(n_rated > 0)
      qb, bb = q[at], b_i[at]
      # Rating head: d/dx of the mean over the batch's ratings of (r - pred)^2 + penalty.
      error = (targets[start:start + batch_size] - (params.offset + b_u + bb + qb @ p)) * m
      grad_p = -2.0 * per_rating * (error @ qb) + 2 * l2 * has_ratings * p
      grad_b_u = -2.0 * per_rating * error.sum() + 2 * l2 * has_ratings * b_u
      grad_q = np.zeros_like(q)
      grad_b_i = np.zeros_like(b_i)
      np.add.at(grad_q, at, per_rating * (-2.0 * error[:, None] * p + 2 * l2 * m[:, None] * qb))
      np.add.at(grad_b_i, at, per_rating * (-2.0 * error + 2 * l2 * m * bb))
      if implicit:
        # Implicit head: w * d/dx of the mean over the batch of BCE + implicit_l2 (|s|^2 + |t|^2).
        size = np.float32(len(at))
        tb = t[at]
        residual = _sigmoid(c[at] + tb @ s) - m
        grad_s = w * (residual @ tb / size + 2 * implicit_l2 * s)
        grad_t = np.zeros_like(t)
        grad_c = np.zeros_like(c)
        np.add.at(grad_t, at, (w / size) * (residual[:, None] * s + 2 * implicit_l2 * tb))
        np.add.at(grad_c, at, (w / size) * residual)
        s = s - lr * grad_s
        t -= lr * grad_t
        c -= lr * grad_c
      p = p - lr * grad_p
      b_u = b_u - lr * grad_b_u
      q -= lr * grad_q
      b_i -= lr * grad_b_i
  return (p, b_u, s), ItemCopy(own, q, b_i, t, c)


def finetune(params: params_lib.MFParams, examples: Sequence[tuple],
             users: params_lib.UserFactors, *, lr: float, epochs: int, batch_size: int,
             implicit_weight: float) -> DeviceModels:
  """`finetune_one` on every device, from its reconstructed `users` row."""
  rows, copies = [], []
  for k, example in enumerate(examples):
    s = None if users.s is None else users.s[k]
    row, copy = finetune_one(params, example, (users.p[k], users.b_u[k], s), lr=lr,
                             epochs=epochs, batch_size=batch_size,
                             implicit_weight=implicit_weight)
    rows.append(row)
    copies.append(copy)
  dim = params.item_factors.shape[1]
  p = np.array([r[0] for r in rows], np.float32).reshape(-1, dim)
  b_u = np.array([r[1] for r in rows], np.float32)
  s = None if users.s is None else np.array([r[2] for r in rows], np.float32).reshape(-1, dim)
  return DeviceModels(params, params_lib.UserFactors(p, b_u, s), copies)


def device_examples(part: split_lib.UserRatings, recon: reconstruction.ReconConfig,
                    num_items: int) -> list[tuple]:
  """Each device's (items, targets, is_rating): its ratings in `part` and its unrated items."""
  return [recon.examples(num_items, int(part.users[k]), part.items_of(k), part.ratings_of(k))
          for k in range(len(part))]


def device_models(method: Optional[str], params: params_lib.MFParams, examples: Sequence[tuple],
                  *, recon: reconstruction.ReconConfig, config: PersonalizeConfig,
                  users: Optional[Sequence[int]] = None) -> DeviceModels:
  """The models of devices with `examples` (`device_examples`) after `method`
  (None or 'none': FedRecon's reconstruction alone); `users` (the devices' user
  ids, by default their positions) seed the further draws of unrated items.

  `recon` is how the model's devices reconstruct (`TrainConfig.recon()`); nothing
  but copies of `params` is changed.
  """
  if method in (None, NONE):
    return DeviceModels(params, recon.reconstruct(params, examples))
  if method == 'budget':
    return DeviceModels(params, _mean_of_draws(params, examples, recon=recon, config=config,
                                               users=users))
  if method == 'finetune':
    users = recon.reconstruct(params, examples)
    return finetune(params, examples, users, lr=config.finetune_lr,
                    epochs=config.finetune_epochs, batch_size=recon.batch_size,
                    implicit_weight=recon.implicit_weight)
  raise ValueError(f'unknown personalization {method!r}; expected one of {", ".join(METHODS)}')


def draw_examples(example: tuple, *, recon: reconstruction.ReconConfig, num_items: int,
                  user: int, draw: int) -> tuple:
  """A device's examples with its `draw`-th draw of unrated items (draw 0: `example`
  itself, the draw FedRecon's evaluation uses), in a fixed random order."""
  if draw == 0 or not recon.negatives_per_rating:
    return example
  items, targets, is_rating = (np.asarray(a) for a in example)
  rated = is_rating > 0
  rng = np.random.default_rng([recon.seed, reconstruction.NEGATIVES_TAG, int(user), int(draw)])
  return reconstruction.with_negatives(items[rated], targets[rated], num_items=num_items,
                                       negatives_per_rating=recon.negatives_per_rating, rng=rng)


def _mean_of_draws(params, examples, *, recon, config, users=None) -> params_lib.UserFactors:
  """Method `budget`: the mean of each device's user parameters over its draws."""
  budget = config.budget_recon(recon)
  users = range(len(examples)) if users is None else users
  total = None
  for draw in range(config.budget_draws):
    drawn = [draw_examples(e, recon=recon, num_items=params.num_items, user=u, draw=draw)
             for e, u in zip(examples, users)]
    factors = budget.reconstruct(params, drawn)
    total = factors if total is None else params_lib.UserFactors(
        *(None if a is None else a + b for a, b in zip(total, factors)))
  return params_lib.UserFactors(*(None if a is None else (a / config.budget_draws).astype(
      np.float32) for a in total))


def personalize(method: Optional[str], params: params_lib.MFParams,
                part: split_lib.UserRatings, *, recon: reconstruction.ReconConfig,
                config: PersonalizeConfig) -> DeviceModels:
  """`device_models` of every user of `part`, from their own ratings in `part`."""
  return device_models(method, params, device_examples(part, recon, params.num_items),
                       recon=recon, config=config, users=[int(u) for u in part.users])


def settings(method: str, config: PersonalizeConfig, recon: reconstruction.ReconConfig) -> dict:
  """What a report states about `method`'s settings (`recon`: the model's own)."""
  if method == 'budget':
    budget = config.budget_recon(recon)
    return {'draws': config.budget_draws, 'epochs': budget.epochs, 'lr': budget.lr}
  return {'epochs': config.finetune_epochs, 'lr': config.finetune_lr}


def validation_split(part: split_lib.UserRatings, *, fraction: float = 0.2,
                     seed: int = 0) -> tuple[split_lib.UserRatings, split_lib.UserRatings]:
  """(kept, held) parts of each user's ratings in `part`: `fraction` of a user's
  ratings at random (at least one, never all; a user with one keeps it), seeded
  by (seed, user). Tuning a device-side choice on (kept -> held) of the training
  users' train ratings leaves their test ratings unseen."""
  kept, held = [], []
  for k in range(len(part)):
    rows = np.arange(part.offsets[k], part.offsets[k + 1])
    n = len(rows)
    count = min(max(int(round(n * fraction)), 1), n - 1) if n >= 2 else 0
    order = np.random.default_rng([seed, 4242, int(part.users[k])]).permutation(n)
    held.append(np.sort(rows[order[:count]]))
    kept.append(np.sort(rows[order[count:]]))
  return _subset(part, kept), _subset(part, held)


def _subset(part: split_lib.UserRatings, rows: list) -> split_lib.UserRatings:
  index = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
  offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
  return split_lib.UserRatings(users=part.users, offsets=offsets, items=part.items[index],
                               ratings=part.ratings[index], timestamps=part.timestamps[index])

"""The trained model as NumPy arrays: what the server releases, and what
evaluation, ranking and a device's reconstruction (`reconstruction.py`) use.

Global item parameters (and the offset) are what the federation learns; a
user table exists only in models that hold one (FedAvg, centralized).
"""

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple
from typing import Optional

import numpy as np


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
_SCALARS = ('offset', 'l2', 'implicit_l2')


def to_arrays(params: MFParams) -> dict[str, np.ndarray]:
  """The parameters as named arrays (what a run directory's model.npz holds)."""
  arrays = {k: getattr(params, k) for k in _ARRAYS if getattr(params, k) is not None}
  arrays.update({k: np.float32(getattr(params, k)) for k in _SCALARS})
  return arrays


def from_arrays(arrays: dict[str, np.ndarray]) -> MFParams:
  """Inverse of `to_arrays` (a model stored without `implicit_l2` has none)."""
  return MFParams(offset=float(arrays['offset']), l2=float(arrays['l2']),
                  implicit_l2=float(arrays['implicit_l2']) if 'implicit_l2' in arrays else 0.0,
                  **{k: arrays[k] for k in _ARRAYS if k in arrays})


def global_weights(params: MFParams) -> list:
  """The global trainable weights of the reconstruction model (its variable order)."""
  weights = [params.item_factors, params.item_bias.reshape(-1, 1), np.float32(params.offset)]
  if params.implicit:
    weights += [params.implicit_item_factors, params.implicit_item_bias.reshape(-1, 1)]
  return weights

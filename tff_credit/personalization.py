"""Personalized scorecards: each bank adapts the released federated model to its own rows.

Runs in the simulation's orchestrator after training, but models what a bank
does on its own premises once the federation has released its model: it uses
the federated weights, its own training rows, its own validation rows and
(for `mixture`) its own local-only model; nothing is sent anywhere and the
server takes no part. Test rows are never an input here: every choice (the
number of fine-tuning epochs, the mixing weight) is made on the bank's
validation rows, and the evaluation then scores the result on the test rows.

Methods (`METHODS`):
  finetune  the bank continues SGD on the federated model with its training
            rows, for 0..`personalize_epochs` epochs, and keeps an epoch
            chosen on validation AUC (0 = the federated model unchanged, when
            fine-tuning does not help on validation).
  mixture   model interpolation (Mansour et al. 2020, "Three approaches for
            personalization with applications to federated learning"; the
            mixing of APFL, Deng et al. 2020): P(bad) = sigmoid(a * logit_fed +
            (1 - a) * logit_local), with `a` on the grid 0, 1/n, ..., 1 chosen on
            validation AUC. a = 1 is the federated model and a = 0 the bank's
            local-only model, score for score.

The choice (`choose`) is the one-standard-error rule (Breiman et al. 1984;
Hastie et al., "The Elements of Statistical Learning", 7.10): of the
candidates whose validation AUC is within `personalize_se` Hanley-McNeil
standard errors of the best, the one closest to the federated model (fewest
epochs, largest a). A small bank's validation rows are a handful (13 on the
bundled data's smallest bank), whose AUC moves by 0.1 with one applicant:
picking the plain maximum there replaced the federated model by the
local-only one on noise (bench/credit_personalization.py: the smallest bank's
mixture gain over local-only +0.042 with the maximum, against +0.067 for the
federated model). `personalize_se=0` is the plain maximum, ties to the
federated end.

When a bank cannot choose (no validation rows, or rows of a single class, so
AUC is undefined), both methods keep the federated model (0 epochs, a = 1)
and `describe()` says why; nothing falls back silently.

`personalize` is the one entry point, per bank; the evaluation reports each
method as a model `personalized_<method>` next to federated, local-only and
centralized.
"""

import dataclasses
from collections.abc import Sequence
from typing import Optional
from typing import Protocol
from typing import Union

import numpy as np

from tff_common import checks
from tff_common import seeding
from tff_credit import metrics as metrics_lib
from tff_credit import model as model_lib

METHODS = ('finetune', 'mixture')
NONE = 'none'


@dataclasses.dataclass(frozen=True)
class PersonalizeConfig:
  """What each bank does with the released model; fields are named after their flags.

  Attributes:
    personalize: The methods, a subset of `METHODS` (flag: a comma list, or
      'none' for no personalized model).
    personalize_epochs: The most epochs `finetune` may train (it chooses 0..this
      on validation).
    personalize_lr: `finetune`'s SGD learning rate.
    personalize_batch_size: `finetune`'s batch size.
    mixture_steps: `mixture` tries a = 0, 1/n, ..., 1 for n = this.
    personalize_se: How many standard errors of the best validation AUC a
      choice may give up to stay closer to the federated model (`choose`).
  """
  personalize: Sequence[str] = METHODS
  personalize_epochs: int = 10
  personalize_lr: float = 0.05
  personalize_batch_size: int = 32
  mixture_steps: int = 10
  personalize_se: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, 'personalize', tuple(self.personalize))  # a flag gives a list

  @property
  def methods(self) -> tuple[str, ...]:
    """The methods to run; none for 'none'."""
    return () if self.personalize == (NONE,) else tuple(self.personalize)

  def check(self):
    expected = f"'{NONE}' or a comma list of {', '.join(METHODS)}, each once"
    if not self.personalize:  # an empty flag is not 'none': say which is meant
      checks.fail('personalize', '', expected)
    for method in self.methods:
      if method not in METHODS or self.methods.count(method) > 1:
        checks.fail('personalize', ','.join(self.methods), expected)
    checks.at_least('personalize_epochs', self.personalize_epochs, 1)
    checks.positive('personalize_lr', self.personalize_lr)
    checks.at_least('personalize_batch_size', self.personalize_batch_size, 1)
    checks.at_least('mixture_steps', self.mixture_steps, 1)
    checks.non_negative('personalize_se', self.personalize_se)


def parse_methods(text: Union[str, Sequence[str]]) -> tuple[str, ...]:
  """The methods of a `--personalize` value ('none', 'finetune', 'finetune,mixture')."""
  values = [v.strip() for v in (text.split(',') if isinstance(text, str) else text)]
  config = PersonalizeConfig(personalize=[] if values == [''] else values)
  config.check()
  return config.methods


class Personalized(Protocol):
  """A bank's personalized model: what the evaluation scores and reports."""
  method: str

  def predict(self, features: np.ndarray) -> np.ndarray:
    """P(bad) of each row."""

  def describe(self) -> str:
    """The choice made on validation, e.g. 'epochs 3 (val AUC 0.812)', for report.md."""

  def summary(self) -> dict:
    """The same for summary.json."""


def no_choice_reason(y_val: np.ndarray) -> Optional[str]:
  """Why validation cannot choose (None when it can): AUC needs both classes."""
  if len(y_val) == 0:
    return 'no validation rows'
  if metrics_lib.auc(y_val, np.zeros(len(y_val))) is None:
    only = 'bad' if np.all(np.asarray(y_val) == 1) else 'good'
    return f'the {len(y_val)} validation rows are all "{only}"'
  return None



def _fallback_text(reason: str) -> str:
  return f'fallback to the federated model: {reason}, AUC undefined'


@dataclasses.dataclass(frozen=True)
class Choice:
  """A candidate chosen on validation by the one-standard-error rule."""
  index: int             # of the chosen candidate (0: the federated end)
  val_auc: float
  best_index: int        # of the best validation AUC
  best_val_auc: float
  standard_error: float  # Hanley-McNeil, of the best AUC on the validation rows
  se: float              # the tolerance, in standard errors


def choose(aucs: Sequence[float], y_val: np.ndarray, *, se: float) -> Choice:
  """The first candidate whose validation AUC is within `se` standard errors of the best.

  `aucs` are ordered from the federated model outwards (0 epochs first, or
  a = 1 first), so a near-tie goes to the candidate closer to the federated
  model; `se=0` keeps the first maximum.
  """
  aucs = [-np.inf if a is None else a for a in aucs]
  best = int(np.argmax(aucs))  # the first maximum
  labels = np.asarray(y_val).astype(bool)
  error = metrics_lib.auc_standard_error(aucs[best], int(labels.sum()), int((~labels).sum()))
  threshold = aucs[best] - se * (error or 0.0)
  index = next(i for i, a in enumerate(aucs) if a >= threshold)
  return Choice(index=index, val_auc=aucs[index], best_index=best, best_val_auc=aucs[best],
                standard_error=error or 0.0, se=se)


def _choice_text(choice: Optional[Choice], chosen: str, best: str) -> str:
  text = f'{chosen} (val AUC {choice.val_auc:.4f}'
  if choice.best_index != choice.index:
    text += (f'; {best} had {choice.best_val_auc:.4f}, within {choice.se:g} s.e. = '
             f'{choice.se * choice.standard_error:.4f}')
  return text + ')'


@dataclasses.dataclass(frozen=True)
class FineTuned:
  """The federated model fine-tuned on one bank's training rows."""
  model: str
  weights: list[np.ndarray]
  epochs: int                       # 0: the federated model itself
  choice: Optional[Choice] = None   # None when validation could not choose
  fallback: Optional[str] = None    # why validation could not choose
  method: str = 'finetune'

  @property
  def val_auc(self) -> Optional[float]:
    return None if self.choice is None else self.choice.val_auc

  def predict(self, features: np.ndarray) -> np.ndarray:
    return model_lib.predict(model=self.model, weights=self.weights, features=features)

  def describe(self) -> str:
    if self.fallback:
      return f'epochs 0 ({_fallback_text(self.fallback)})'
    return _choice_text(self.choice, f'epochs {self.epochs}',
                        f'epochs {self.choice.best_index}')

  def summary(self) -> dict:
    return {'method': self.method, 'epochs': self.epochs, 'val_auc': self.val_auc,
            'best_epochs': None if self.choice is None else self.choice.best_index,
            'best_val_auc': None if self.choice is None else self.choice.best_val_auc,
            'fallback': self.fallback, 'description': self.describe()}


def finetune(*, weights: Sequence[np.ndarray], model: str, x_train: np.ndarray,
             y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, max_epochs: int,
             learning_rate: float, batch_size: int, l2: float = 0.0, se: float = 1.0,
             seed: int) -> FineTuned:
  """Fine-tunes `weights` on one bank's training rows; epochs chosen on its validation rows.

  Trains with SGD at `learning_rate` (binary cross-entropy plus `l2` times the
  squared kernels, the scorecard's own L2), one epoch at a time, scoring the
  validation rows after each; the candidates are 0 (the given weights) to
  `max_epochs` epochs, and `choose` picks one (`se` standard errors; ties and
  near-ties to fewer epochs). Deterministic for a `seed` (the shuffles).
  """
  weights = [np.array(w) for w in weights]
  reason = no_choice_reason(y_val)
  if reason is not None:
    return FineTuned(model=model, weights=weights, epochs=0, fallback=reason)
  candidates = [weights]
  if len(y_train):
    import tensorflow as tf
    seeding.set_seed(seed)
    keras_model = model_lib.build_keras_model(model=model, num_features=x_train.shape[1],
                                              seed=seed)
    keras_model.set_weights(weights)
    if l2 > 0:
      for layer in keras_model.layers:
        if hasattr(layer, 'kernel'):
          keras_model.add_loss(lambda kernel=layer.kernel: l2 * tf.reduce_sum(tf.square(kernel)))
    keras_model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate),
                        loss=tf.keras.losses.BinaryCrossentropy())
    for _ in range(max_epochs):
      keras_model.fit(x_train, np.asarray(y_train)[:, None], epochs=1, batch_size=batch_size,
                      shuffle=True, verbose=0)
      current = keras_model.get_weights()
      if not all(np.all(np.isfinite(w)) for w in current):
        break  # diverged: the epochs so far are the candidates
      candidates.append(current)
  choice = choose([_val_auc(model, w, x_val, y_val) for w in candidates], y_val, se=se)
  return FineTuned(model=model, weights=candidates[choice.index], epochs=choice.index,
                   choice=choice)


def _val_auc(model: str, weights, x_val, y_val) -> Optional[float]:
  return metrics_lib.auc(y_val, model_lib.predict(model=model, weights=weights, features=x_val))


def logits(*, model: str, weights: Sequence[np.ndarray], features: np.ndarray) -> np.ndarray:
  """The scorecard's log-odds of bad, in float64 (`model_lib.predict` is its sigmoid).

  Follows `model_lib.build_keras_model`'s weights: logreg [kernel, bias];
  mlp [hidden kernel, hidden bias, score kernel, score bias] with ReLU.
  """
  x = np.asarray(features, np.float64)
  w = [np.asarray(v, np.float64) for v in weights]
  if model == 'logreg':
    return (x @ w[0] + w[1]).ravel()
  if model == 'mlp':
    return (np.maximum(x @ w[0] + w[1], 0.0) @ w[2] + w[3]).ravel()
  raise ValueError(f'--model must be one of {", ".join(model_lib.MODELS)}, got {model!r}')


def _sigmoid(z: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


@dataclasses.dataclass(frozen=True)
class Mixture:
  """sigmoid(a * logit_federated + (1 - a) * logit_local) for one bank."""
  model: str
  global_weights: list[np.ndarray]
  local_weights: list[np.ndarray]
  a: float
  choice: Optional[Choice] = None
  fallback: Optional[str] = None
  steps: int = 10
  method: str = 'mixture'

  @property
  def val_auc(self) -> Optional[float]:
    return None if self.choice is None else self.choice.val_auc

  def predict(self, features: np.ndarray) -> np.ndarray:
    # The end points are the two models themselves, score for score.
    if self.a == 1:
      return model_lib.predict(model=self.model, weights=self.global_weights, features=features)
    if self.a == 0:
      return model_lib.predict(model=self.model, weights=self.local_weights, features=features)
    federated = logits(model=self.model, weights=self.global_weights, features=features)
    local = logits(model=self.model, weights=self.local_weights, features=features)
    return _sigmoid(self.a * federated + (1 - self.a) * local)

  def describe(self) -> str:
    if self.fallback:
      return f'a=1 ({_fallback_text(self.fallback)})'
    return _choice_text(self.choice, f'a={self.a:g}',
                        f'a={_grid(self.steps)[self.choice.best_index]:g}')

  def summary(self) -> dict:
    return {'method': self.method, 'a': self.a, 'val_auc': self.val_auc,
            'best_a': None if self.choice is None else _grid(self.steps)[self.choice.best_index],
            'best_val_auc': None if self.choice is None else self.choice.best_val_auc,
            'fallback': self.fallback, 'description': self.describe()}


def _grid(steps: int) -> list[float]:
  """a = 1, (n-1)/n, ..., 0: from the federated end."""
  return [1 - i / steps for i in range(steps + 1)]


def mixture(*, global_weights: Sequence[np.ndarray], local_weights: Sequence[np.ndarray],
            model: str, x_val: np.ndarray, y_val: np.ndarray, steps: int = 10,
            se: float = 1.0) -> Mixture:
  """The mixture of the federated and the bank's local-only model with `a` in
  1, (n-1)/n, ..., 0 (n = `steps`) chosen on validation AUC by `choose` (`se`
  standard errors; ties and near-ties to the larger a)."""
  global_weights = [np.array(w) for w in global_weights]
  local_weights = [np.array(w) for w in local_weights]
  reason = no_choice_reason(y_val)
  if reason is not None:
    return Mixture(model=model, global_weights=global_weights, local_weights=local_weights,
                   a=1.0, fallback=reason, steps=steps)
  candidates = [Mixture(model=model, global_weights=global_weights, local_weights=local_weights,
                        a=a, steps=steps) for a in _grid(steps)]
  choice = choose([metrics_lib.auc(y_val, c.predict(x_val)) for c in candidates], y_val, se=se)
  return dataclasses.replace(candidates[choice.index], choice=choice)


def personalize(method: str, *, global_weights: Sequence[np.ndarray],
                local_weights: Optional[Sequence[np.ndarray]], model: str,
                train: tuple[np.ndarray, np.ndarray],
                val: Optional[tuple[np.ndarray, np.ndarray]], config: PersonalizeConfig,
                seed: int, l2: float = 0.0) -> Personalized:
  """One bank's personalized model by `method`, from its own rows only.

  Args:
    method: One of `METHODS`.
    global_weights: The released federated model's trainable weights.
    local_weights: The bank's local-only model (needed by `mixture`).
    model: The model family (`tff_credit.config.MODELS`).
    train: The bank's training rows (x, y); `finetune` trains on them.
    val: The bank's validation rows (x, y): every choice is made on them; None
      or no rows (a run without a validation split): the federated model,
      described as a fallback.
    config: The methods' settings.
    seed: The bank's seed (fine-tuning shuffles).
    l2: The run's L2 strength, kept while fine-tuning.
  """
  if val is None:
    x_train = train[0]
    val = (np.zeros((0, x_train.shape[1]), np.float32), np.zeros(0, np.float32))
  x_val, y_val = val
  if method == 'finetune':
    x_train, y_train = train
    return finetune(weights=global_weights, model=model, x_train=x_train, y_train=y_train,
                    x_val=x_val, y_val=y_val, max_epochs=config.personalize_epochs,
                    learning_rate=config.personalize_lr,
                    batch_size=config.personalize_batch_size, l2=l2, se=config.personalize_se,
                    seed=seed)
  if method == 'mixture':
    if local_weights is None:
      raise ValueError('mixture needs the bank\'s local-only weights')
    return mixture(global_weights=global_weights, local_weights=local_weights, model=model,
                   x_val=x_val, y_val=y_val, steps=config.mixture_steps, se=config.personalize_se)
  raise ValueError(f'--personalize: {method!r} is not one of {", ".join(METHODS)}')


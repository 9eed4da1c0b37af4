"""The two models of this project, as loss and gradient functions of a weight vector.

Runs wherever it is called: on a client (local gradients) or on the Python
orchestrator (evaluation). A model is a single dense unit, so its weights are
one flat vector `[w_1, ..., w_d, b]`: the kernel, then the bias. The same
layout is what `numpy_fl.crosscheck.tff_twin` copies into and out of a Keras
`Dense(1)`.

Losses are means over the examples, as Keras losses are, so a client's
full-batch gradient equals the one TFF computes from the same data.
"""

import numpy as np
from scipy import special

DTYPES = {'float32': np.float32, 'float64': np.float64}


class LinearRegression:
  """`y ≈ X·w + b` with the mean squared error (the textbook example)."""

  name = 'linear'

  def predict(self, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ weights[:-1] + weights[-1]

  def loss(self, weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    residual = self.predict(weights, x) - y
    return float(np.mean(residual * residual))

  def gradient(self, weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    residual = self.predict(weights, x) - y
    return _dense_gradient(x, 2 * residual)


class LogisticRegression:
  """`P(y = 1) = sigmoid(X·w + b)` with the binary cross-entropy (the credit model)."""

  name = 'logistic'

  def predict(self, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Probabilities of the positive class."""
    return special.expit(self.logits(weights, x))

  def logits(self, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ weights[:-1] + weights[-1]

  def loss(self, weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    z = self.logits(weights, x)
    # log(1 + e^z) - y·z is the cross-entropy written on logits: finite for any z.
    return float(np.mean(np.logaddexp(0, z) - y * z))

  def gradient(self, weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    residual = special.expit(self.logits(weights, x)) - y
    return _dense_gradient(x, residual)


def _dense_gradient(x: np.ndarray, dloss_dprediction: np.ndarray) -> np.ndarray:
  """Gradient of `mean(loss)` for `prediction = x·w + b`, given d loss_i / d prediction_i."""
  n = len(x)
  kernel = x.T @ dloss_dprediction / n
  bias = np.sum(dloss_dprediction) / n
  return np.append(kernel, bias).astype(x.dtype, copy=False)


MODELS = {'linear': LinearRegression, 'logistic': LogisticRegression}


def get_model(name: str):
  """`'linear'` or `'logistic'` -> a model instance."""
  if name not in MODELS:
    raise ValueError(f'unknown model {name!r}; expected one of {", ".join(MODELS)}')
  return MODELS[name]()


def initial_weights(*, num_features: int, dtype=np.float32, seed: int = 0,
                    scale: float = 0.01) -> np.ndarray:
  """Small random kernel, zero bias: the starting point both engines share."""
  rng = np.random.default_rng(seed)
  kernel = rng.normal(0.0, scale, size=num_features)
  return np.append(kernel, 0.0).astype(dtype)

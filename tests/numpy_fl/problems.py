"""Small random problems and clients shared by the engine's tests."""

import numpy as np

import numpy_fl
from numpy_fl import models


def problem(model_name, *, n=30, d=4, seed=0, dtype=np.float64):
  """(x [n, d], y [n], weights [d + 1]) for 'linear' (noisy line) or 'logistic' (0/1 labels)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  if model_name == 'linear':
    y = x @ rng.normal(size=d) + 0.3 + rng.normal(scale=0.1, size=n)
  else:
    y = (rng.random(n) < 0.4).astype(float)
  return x.astype(dtype), y.astype(dtype), rng.normal(size=d + 1).astype(dtype)


def clients(model_name='linear', *, sizes=(12, 7, 20), d=3, seed=0):
  """float32 clients of the given sizes, named c0, c1, ..."""
  model = models.get_model(model_name)
  out = []
  for k, n in enumerate(sizes):
    x, y, _ = problem(model_name, n=n, d=d, seed=seed + k, dtype=np.float32)
    out.append(numpy_fl.Client(x, y, model=model, name=f'c{k}'))
  return out

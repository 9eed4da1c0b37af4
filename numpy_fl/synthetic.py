"""The textbook synthetic linear regression problem, split over clients of unequal size.

Runs once on the Python orchestrator before training. `y = x·w* + b* + noise`
with a ground truth shared by all clients; clients differ in size (so uniform
and example-weighted means differ) and in the mean of their features (so their
gradients disagree, as non-IID clients' do).
"""

import numpy as np


def linear_problem(*, clients: int = 5, features: int = 10, min_examples: int = 40,
                   max_examples: int = 200, noise: float = 0.1, feature_shift: float = 0.5,
                   seed: int = 0) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
  """Returns ({client name: (x float32 [n, d], y float32 [n])}, true weights [d + 1])."""
  if clients < 1 or features < 1:
    raise ValueError(f'need at least one client and one feature, got {clients} and {features}')
  if not 1 <= min_examples <= max_examples:
    raise ValueError(f'need 1 <= min_examples <= max_examples, got {min_examples}, {max_examples}')
  rng = np.random.default_rng(seed)
  truth = np.append(rng.normal(size=features), rng.normal()).astype(np.float32)
  sizes = np.linspace(max_examples, min_examples, clients).round().astype(int)
  data = {}
  for k, n in enumerate(sizes):
    shift = rng.normal(scale=feature_shift, size=features)
    x = rng.normal(size=(n, features)) + shift
    y = x @ truth[:-1] + truth[-1] + rng.normal(scale=noise, size=n)
    data[f'client_{k}'] = (x.astype(np.float32), y.astype(np.float32))
  return data, truth

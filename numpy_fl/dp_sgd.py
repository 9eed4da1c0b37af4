"""DP-SGD on a client: the NumPy twin of `tff_credit.dp_sgd`'s client step.

Runs on the client. For each of its batches (row indices, e.g. Poisson-sampled
by the orchestrator), step s computes every example's gradient, clips it to L2
norm `l2_clip` (all weights jointly), sums, adds `noise_multiplier * l2_clip`
times N(0, 1) draws per coordinate, divides by `expected_batch_size` (not by
the batch's own size, which is private; an empty batch still adds noise) and
takes an SGD step (Abadi et al. 2016). What it sends is the model delta, as
`Client.train` does.

The noise is a function `noise(step, size)` of standard normal draws. By
default (`gaussian_noise`) it is NumPy's, drawn from `(seed, step)`; the
cross-engine tests pass TF's draws instead (`tff_credit.dp_sgd.standard_noise`),
so that both engines add the very same noise.
"""

from collections.abc import Callable
from collections.abc import Sequence

import numpy as np

from numpy_fl import client as client_lib

# (step, size) -> float[size] of N(0, 1) draws.
NoiseFn = Callable[[int, int], np.ndarray]


def gaussian_noise(seed: Sequence[int]) -> NoiseFn:
  """NumPy's N(0, 1) draws for step s, from a generator seeded by `[*seed, s]`:
  a pure function of the seed and the step, as the TFF twin's noise is."""
  seed = [int(s) for s in seed]

  def noise(step: int, size: int) -> np.ndarray:
    return np.random.default_rng([*seed, step]).standard_normal(size)

  return noise


def per_example_gradients(model, weights: np.ndarray, x: np.ndarray,
                          y: np.ndarray) -> np.ndarray:
  """[n, p]: row i is the gradient of the model's loss on example i alone.

  Each is the model's mean-loss gradient on a batch of that one example, as
  TFF's twin computes it, so any `numpy_fl.models` model works.
  """
  gradients = np.zeros((len(x), len(weights)), dtype=weights.dtype)
  for i in range(len(x)):
    gradients[i] = model.gradient(weights, x[i:i + 1], y[i:i + 1])
  return gradients


def clip(gradients: np.ndarray, l2_clip: float) -> np.ndarray:
  """Each row scaled to L2 norm at most `l2_clip`; rows within it unchanged."""
  norms = np.linalg.norm(gradients, axis=1)
  return gradients / np.maximum(1.0, norms / l2_clip)[:, None]


def dp_sgd_step(model, weights: np.ndarray, x: np.ndarray, y: np.ndarray, *, lr: float,
                l2_clip: float, noise_multiplier: float, expected_batch_size: int,
                standard_normal: np.ndarray) -> np.ndarray:
  """One step: `weights - lr * (sum of clipped gradients + z·C·standard_normal) / B`."""
  clipped_sum = clip(per_example_gradients(model, weights, x, y), l2_clip).sum(axis=0)
  noised = clipped_sum + noise_multiplier * l2_clip * standard_normal
  return (weights - lr * noised / expected_batch_size).astype(weights.dtype)


def train(client: client_lib.Client, weights: np.ndarray, *, batches: Sequence[np.ndarray],
          lr: float, l2_clip: float, noise_multiplier: float, expected_batch_size: int,
          noise: NoiseFn) -> client_lib.ClientUpdate:
  """DP-SGD over `batches` (row indices into the client's data) from `weights`.

  Args:
    client: The client's examples and model.
    weights: The broadcast model.
    batches: One array of row indices per step; may be empty.
    lr: Client learning rate.
    l2_clip: C, the largest norm of one example's gradient.
    noise_multiplier: z; 0 adds no noise.
    expected_batch_size: B, the divisor of every step.
    noise: The N(0, 1) draws of each step (`gaussian_noise(seed)`, or TF's).

  Returns:
    `initial - trained`, and as the example count `len(batches) * B`, the
    examples processed in expectation (the TFF twin's client weight: the
    realized count is private).
  """
  if not (lr > 0 and l2_clip > 0 and noise_multiplier >= 0):
    raise ValueError(f'expected lr > 0, l2_clip > 0, noise_multiplier >= 0; got {lr}, '
                     f'{l2_clip}, {noise_multiplier}')
  if expected_batch_size != int(expected_batch_size) or expected_batch_size < 1:
    raise ValueError(f'expected_batch_size must be an integer >= 1, got {expected_batch_size}')
  initial = np.asarray(weights, dtype=client.dtype)
  trained = initial.copy()
  for step, rows in enumerate(batches):
    rows = np.asarray(rows, dtype=np.int64)
    standard_normal = np.asarray(noise(step, len(trained)), dtype=client.dtype)
    trained = dp_sgd_step(client.model, trained, client.x[rows], client.y[rows], lr=lr,
                          l2_clip=l2_clip, noise_multiplier=noise_multiplier,
                          expected_batch_size=expected_batch_size,
                          standard_normal=standard_normal)
  return client_lib.ClientUpdate(initial - trained, len(batches) * int(expected_batch_size))

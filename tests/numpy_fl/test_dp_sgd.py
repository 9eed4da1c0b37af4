"""numpy_fl.dp_sgd: per-example gradients, clipping, noise of the right scale, no TensorFlow."""

import numpy as np
import pytest

import numpy_fl
from numpy_fl import dp_sgd
from numpy_fl import models
from tests.numpy_fl import problems
from tests.numpy_fl import test_engine_imports


def _client(n=12, d=3, seed=0, scale=1.0):
  x, y, _ = problems.problem('logistic', n=n, d=d, seed=seed, dtype=np.float32)
  return numpy_fl.Client(x * scale, y, model=models.LogisticRegression())


def test_per_example_gradients_average_to_the_batch_gradient():
  c = _client()
  w = models.initial_weights(num_features=3, seed=1, scale=0.5)
  per_example = dp_sgd.per_example_gradients(c.model, w, c.x, c.y)
  assert per_example.shape == (12, 4)
  np.testing.assert_allclose(per_example.mean(axis=0), c.model.gradient(w, c.x, c.y),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(per_example[5], c.model.gradient(w, c.x[5:6], c.y[5:6]))


def test_clip_scales_long_rows_to_the_bound_and_keeps_short_ones():
  gradients = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
  clipped = dp_sgd.clip(gradients, 1.0)
  np.testing.assert_allclose(clipped, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])


def test_without_clipping_or_noise_a_step_is_sgd_on_the_sum_over_b():
  c = _client()
  w = models.initial_weights(num_features=3, seed=2)
  stepped = dp_sgd.dp_sgd_step(c.model, w, c.x, c.y, lr=0.1, l2_clip=1e6, noise_multiplier=0.0,
                               expected_batch_size=8, standard_normal=np.zeros(4))
  # Divided by B = 8, not by the 12 examples of the batch.
  np.testing.assert_allclose(stepped, w - 0.1 * 12 / 8 * c.model.gradient(w, c.x, c.y),
                             rtol=1e-5, atol=1e-7)


def test_an_outlier_moves_a_step_by_exactly_lr_clip_over_b():
  c = _client(n=10)
  w = models.initial_weights(num_features=3, seed=3)
  x = np.concatenate([c.x, np.full((1, 3), 1e3, np.float32)])
  y = np.append(c.y, np.float32(0.0))
  assert np.linalg.norm(dp_sgd.per_example_gradients(c.model, w, x[-1:], y[-1:])) > 100
  noise = np.random.default_rng(0).standard_normal(4)
  kwargs = dict(lr=0.5, l2_clip=1.0, noise_multiplier=1.0, expected_batch_size=5,
                standard_normal=noise)
  without = dp_sgd.dp_sgd_step(c.model, w, c.x, c.y, **kwargs)
  with_outlier = dp_sgd.dp_sgd_step(c.model, w, x, y, **kwargs)
  assert np.linalg.norm(with_outlier - without) == pytest.approx(0.5 * 1.0 / 5, rel=1e-5)


def test_the_noise_is_a_function_of_seed_and_step():
  c = _client()
  w = models.initial_weights(num_features=3, seed=4)
  batches = [np.arange(0, 6), np.array([], np.int64), np.arange(6, 12)]
  kwargs = dict(batches=batches, lr=0.1, l2_clip=1.0, noise_multiplier=1.0, expected_batch_size=6)
  a = dp_sgd.train(c, w, noise=dp_sgd.gaussian_noise([7, 0]), **kwargs)
  b = dp_sgd.train(c, w, noise=dp_sgd.gaussian_noise([7, 0]), **kwargs)
  other = dp_sgd.train(c, w, noise=dp_sgd.gaussian_noise([7, 1]), **kwargs)
  np.testing.assert_array_equal(a.update, b.update)
  assert not np.allclose(a.update, other.update)
  noise = dp_sgd.gaussian_noise([7, 0])
  assert not np.array_equal(noise(0, 4), noise(1, 4))
  # The weight is the expected example count, steps x B, not the 12 rows seen.
  assert a.num_examples == 3 * 6


def test_an_empty_batch_adds_only_noise():
  c = _client()
  w = models.initial_weights(num_features=3, seed=5)
  noise = dp_sgd.gaussian_noise([3, 3])
  got = dp_sgd.train(c, w, batches=[np.array([], np.int64)], lr=0.2, l2_clip=2.0,
                     noise_multiplier=1.5, expected_batch_size=4, noise=noise)
  np.testing.assert_allclose(got.update, 0.2 * 1.5 * 2.0 / 4 * noise(0, 4), rtol=1e-6)


def test_the_noise_of_a_step_has_standard_deviation_lr_z_c_over_b():
  d = 800
  c = _client(n=10, d=d, scale=0.1)
  w = np.zeros(d + 1, np.float32)
  kwargs = dict(batches=[np.arange(10)], lr=0.3, l2_clip=0.5, expected_batch_size=10)
  noiseless = dp_sgd.train(c, w, noise_multiplier=0.0, noise=dp_sgd.gaussian_noise([0]), **kwargs)
  noised = dp_sgd.train(c, w, noise_multiplier=2.0, noise=dp_sgd.gaussian_noise([1]), **kwargs)
  difference = noised.update - noiseless.update
  # 801 draws: the sample std is within 10% of the truth far beyond 4 sigma (2.5% each).
  assert np.std(difference) == pytest.approx(0.3 * 2.0 * 0.5 / 10, rel=0.1)
  assert abs(np.mean(difference)) < 4 * 0.03 / np.sqrt(d + 1)


def test_bad_settings_are_refused():
  c = _client()
  w = np.zeros(4, np.float32)
  with pytest.raises(ValueError, match='l2_clip'):
    dp_sgd.train(c, w, batches=[], lr=0.1, l2_clip=0.0, noise_multiplier=1.0,
                 expected_batch_size=4, noise=dp_sgd.gaussian_noise([0]))
  with pytest.raises(ValueError, match='expected_batch_size'):
    dp_sgd.train(c, w, batches=[], lr=0.1, l2_clip=1.0, noise_multiplier=1.0,
                 expected_batch_size=2.5, noise=dp_sgd.gaussian_noise([0]))


def test_the_twin_loads_no_tensorflow():
  assert test_engine_imports._loaded_forbidden(['numpy_fl.dp_sgd']) == []

"""numpy_fl.client: gradients with example counts, local SGD (full batch, minibatches, shuffled)."""

import numpy as np
import pytest

import numpy_fl
from numpy_fl import models
from tests.numpy_fl import problems


def test_client_gradient_reports_its_example_count():
  c = problems.clients(sizes=(9,))[0]
  update = c.gradient(np.zeros(4, np.float32))
  assert update.num_examples == 9
  np.testing.assert_array_equal(update.update, c.model.gradient(np.zeros(4, np.float32), c.x, c.y))


def test_local_training_full_batch_is_gradient_steps():
  c = problems.clients(sizes=(15,))[0]
  w = models.initial_weights(num_features=3, seed=2)
  one = c.train(w, lr=0.1, epochs=1)
  np.testing.assert_allclose(one.update, 0.1 * c.model.gradient(w, c.x, c.y), rtol=1e-6)
  two = c.train(w, lr=0.1, epochs=2)
  w1 = w - 0.1 * c.model.gradient(w, c.x, c.y)
  w2 = w1 - 0.1 * c.model.gradient(w1, c.x, c.y)
  np.testing.assert_allclose(two.update, w - w2, rtol=1e-5, atol=1e-7)
  assert (one.num_examples, two.num_examples) == (15, 30)


def test_local_training_minibatches_in_stored_order_with_short_last_batch():
  c = problems.clients(sizes=(10,))[0]
  w = models.initial_weights(num_features=3, seed=3)
  got = c.train(w, lr=0.05, batch_size=4)
  expected = w.copy()
  for rows in (slice(0, 4), slice(4, 8), slice(8, 10)):
    expected = expected - 0.05 * c.model.gradient(expected, c.x[rows], c.y[rows])
  np.testing.assert_allclose(got.update, w - expected, rtol=1e-6, atol=1e-7)


def test_shuffling_is_deterministic_in_its_seed():
  c = problems.clients(sizes=(17,))[0]
  w = models.initial_weights(num_features=3, seed=4)
  a = c.train(w, lr=0.1, batch_size=3, epochs=2, shuffle_seed=np.random.SeedSequence([7, 0]))
  b = c.train(w, lr=0.1, batch_size=3, epochs=2, shuffle_seed=np.random.SeedSequence([7, 0]))
  other = c.train(w, lr=0.1, batch_size=3, epochs=2, shuffle_seed=np.random.SeedSequence([8, 0]))
  unshuffled = c.train(w, lr=0.1, batch_size=3, epochs=2)
  np.testing.assert_array_equal(a.update, b.update)
  assert not np.array_equal(a.update, other.update)
  assert not np.array_equal(a.update, unshuffled.update)


def test_client_rejects_malformed_data():
  model = models.LinearRegression()
  with pytest.raises(ValueError, match='2-D'):
    numpy_fl.Client(np.zeros(5), np.zeros(5), model=model)
  with pytest.raises(ValueError, match='one per example'):
    numpy_fl.Client(np.zeros((5, 2)), np.zeros(4), model=model)
  with pytest.raises(ValueError, match='finite'):
    numpy_fl.Client(np.array([[np.nan]]), np.zeros(1), model=model)

"""tff_rec.reconstruction: a device's user parameters rebuilt in NumPy, its unrated
items, and the equivalence with the Keras model's SGD (what TFF's clients run)."""

import numpy as np
import tensorflow as tf

from tff_rec import model as model_lib
from tff_rec import params as params_lib
from tff_rec import reconstruction


def test_reconstruction_fits_a_users_ratings():
  rng = np.random.default_rng(0)
  params = params_lib.MFParams(item_factors=rng.normal(size=(30, 4)).astype(np.float32),
                               item_bias=np.zeros(30, np.float32), offset=3.0, l2=0.0)
  true_p = np.array([0.5, -0.3, 0.2, 0.1], np.float32)
  items = np.arange(20)
  ratings = (3.0 + params.item_factors[items] @ true_p).astype(np.float32)
  users = reconstruction.reconstruct(params, [(items, ratings), (items[:0], ratings[:0])],
                                     lr=0.05, epochs=200, batch_size=8)
  np.testing.assert_allclose(users.p[0], true_p, atol=0.02)
  assert abs(users.b_u[0]) < 0.02 and users.s is None  # a rating-only model
  assert not users.p[1].any() and users.b_u[1] == 0  # no ratings: nothing to rebuild


def test_negatives_are_unrated_items_deterministic_in_the_seed():
  rated = np.array([0, 3, 4, 9], np.int32)
  ratings = np.array([4.0, 2.0, 5.0, 3.5], np.float32)
  def draw(seed, user, round_num=None, k=2.0):
    return reconstruction.with_negatives(
        rated, ratings, num_items=40, negatives_per_rating=k,
        rng=reconstruction.negatives_rng(seed, user, round_num))
  items, targets, is_rating = draw(0, 7)
  real = is_rating == 1
  np.testing.assert_array_equal(np.sort(items[real]), rated)
  np.testing.assert_array_equal(targets[real][np.argsort(items[real])], ratings)
  negatives = items[~real]
  assert len(negatives) == 8 == len(set(negatives.tolist()))
  assert not set(negatives.tolist()) & set(rated.tolist())
  for a, b in zip(draw(0, 7), (items, targets, is_rating)):
    np.testing.assert_array_equal(a, b)
  for other in (draw(1, 7), draw(0, 8), draw(0, 7, round_num=0)):
    assert set(other[0][other[2] == 0].tolist()) != set(negatives.tolist())
  # Never more than the unrated items; none when turned off.
  assert (draw(0, 7, k=100.0)[2] == 0).sum() == 36
  assert (draw(0, 7, k=0.0)[2] == 0).sum() == 0


def _two_head_params(rng, num_items=30, dim=4):
  return params_lib.MFParams(
      item_factors=rng.normal(size=(num_items, dim)).astype(np.float32),
      item_bias=rng.normal(scale=0.3, size=num_items).astype(np.float32), offset=3.0, l2=0.01,
      implicit_item_factors=rng.normal(size=(num_items, dim)).astype(np.float32),
      implicit_item_bias=rng.normal(scale=0.3, size=num_items).astype(np.float32),
      implicit_l2=0.005)


def test_unrated_items_do_not_move_the_rating_head():
  rng = np.random.default_rng(0)
  params = _two_head_params(rng)
  items = np.arange(10)
  ratings = rng.uniform(1, 5, size=10).astype(np.float32)
  alone = reconstruction.reconstruct(params, [(items, ratings)], lr=0.05, epochs=5,
                                     batch_size=20, implicit_weight=10.0)
  examples = reconstruction.with_negatives(items, ratings, num_items=30,
                                           negatives_per_rating=1.0,
                                           rng=np.random.default_rng(1))
  mixed = reconstruction.reconstruct(params, [examples], lr=0.05, epochs=5, batch_size=20,
                                     implicit_weight=10.0)
  # One batch holds every example: the rating head's loss is the mean over
  # the ratings alone, so the unrated items beside them change nothing.
  np.testing.assert_allclose(mixed.p, alone.p, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(mixed.b_u, alone.b_u, rtol=1e-5, atol=1e-6)
  # ...but they are what the implicit head learns from: the rated items rise.
  logits = params.rated_logits(mixed.s[0])[0]
  before = params.rated_logits(np.zeros(4, np.float32))[0]
  rated, unrated = items, examples[0][examples[2] == 0]
  assert (logits - before)[rated].mean() > 0.2 > 0 > (logits - before)[unrated].mean()


def test_numpy_reconstruction_is_the_keras_models_sgd():
  """reconstruction.reconstruct takes the steps TFF's reconstruction takes: plain
  SGD on the local variables of model.MatrixFactorization under model.RatingLoss."""
  rng = np.random.default_rng(3)
  params = _two_head_params(rng, num_items=25, dim=3)
  items, targets, is_rating = reconstruction.with_negatives(
      rng.choice(25, size=9, replace=False), rng.uniform(1, 5, size=9).astype(np.float32),
      num_items=25, negatives_per_rating=2.0, rng=np.random.default_rng(4))
  lr, epochs, batch_size, weight = 0.05, 3, 4, 7.0
  keras_model = model_lib.build_keras_model(
      num_items=25, num_users=1, dim=3, l2=params.l2, global_mean=params.offset,
      implicit=True, implicit_l2=params.implicit_l2, with_user_input=False)
  keras_model.item_factors.set_weights([params.item_factors])
  keras_model.item_bias.set_weights([params.item_bias[:, None]])
  keras_model.implicit_item_factors.set_weights([params.implicit_item_factors])
  keras_model.implicit_item_bias.set_weights([params.implicit_item_bias[:, None]])
  local = [keras_model.user_factors.embeddings, keras_model.user_bias.embeddings,
           keras_model.implicit_user_factors.embeddings]
  loss = model_lib.RatingLoss(weight)
  y = model_lib.labels(targets, is_rating)
  for _ in range(epochs):
    for start in range(0, len(items), batch_size):
      batch = slice(start, start + batch_size)
      with tf.GradientTape() as tape:
        value = loss(y[batch], keras_model({'item': tf.constant(items[batch], tf.int32)}))
      for variable, gradient in zip(local, tape.gradient(value, local)):
        variable.assign_sub(lr * tf.convert_to_tensor(gradient))
  users = reconstruction.reconstruct(params, [(items, targets, is_rating)], lr=lr,
                                     epochs=epochs, batch_size=batch_size,
                                     implicit_weight=weight)
  np.testing.assert_allclose(users.p[0], local[0].numpy()[0], atol=1e-5)
  np.testing.assert_allclose(users.b_u[0], local[1].numpy()[0, 0], atol=1e-5)
  np.testing.assert_allclose(users.s[0], local[2].numpy()[0], atol=1e-5)
  assert np.abs(users.s[0]).max() > 0.01  # the implicit head did move

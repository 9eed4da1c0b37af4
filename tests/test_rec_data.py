"""tff_rec data, split, ranking and on-device reconstruction (no TFF runtime)."""

import numpy as np
import pytest

from tff_rec import synthetic
from tff_common import errors
from tff_rec import data as data_lib
from tff_rec import params as params_lib
from tff_rec import ranking
from tff_rec import split as split_lib


@pytest.mark.parametrize('fmt', data_lib.FORMATS)
def test_detects_each_movielens_format_and_reads_titles(tmp_path, fmt):
  ratings = synthetic.synthetic_ratings()
  path = synthetic.write(ratings, str(tmp_path / fmt), fmt)
  loaded = data_lib.load_file(path)
  assert fmt in loaded.source and loaded.skipped_lines == 0
  np.testing.assert_array_equal(loaded.user, ratings.user)
  np.testing.assert_array_equal(loaded.item, ratings.item)
  np.testing.assert_array_equal(loaded.rating, ratings.rating)
  np.testing.assert_array_equal(loaded.timestamp, ratings.timestamp)
  expected_title = 'Movie 3 (2000), The' if fmt == 'ml-latest' else 'Movie 3 (2000)'
  assert loaded.titles[103] == expected_title


@pytest.mark.parametrize('bad_line, column_text', [
    ('7\t101\tfive\t1000', 'line 3, column 3 (rating): expected a number'),
    ('7\t101\t4', 'line 3: expected 4 fields'),
    ('x7\t101\t4\t1000', 'line 3, column 1 (user): expected an integer'),
    ('7\t101\t9\t1000', 'line 3, column 3 (rating): expected a rating between'),
])
def test_malformed_line_is_one_clear_error_or_counted(tmp_path, bad_line, column_text):
  path = tmp_path / 'u.data'
  path.write_text('1\t100\t4\t10\n2\t100\t3\t11\n' + bad_line + '\n3\t101\t5\t12\n')
  with pytest.raises(errors.InputError) as raised:
    data_lib.load_file(str(path))
  assert str(raised.value).startswith(f'{path}, ') and column_text in str(raised.value)
  loaded = data_lib.load_file(str(path), skip_bad_lines=True)
  assert loaded.skipped_lines == 1 and len(loaded) == 3


def test_unknown_format_and_missing_file_are_input_errors(tmp_path):
  path = tmp_path / 'r.txt'
  path.write_text('1 100 4 10\n')
  with pytest.raises(errors.InputError, match='cannot tell the ratings format'):
    data_lib.load_file(str(path))
  with pytest.raises(errors.InputError, match='no such ratings file'):
    data_lib.load_file(str(tmp_path / 'absent.csv'))


def _pairs(part):
  return {(int(part.users[k]), int(i)) for k in range(len(part)) for i in part.items_of(k)}


@pytest.mark.parametrize('method', split_lib.METHODS)
def test_split_invariants(method):
  ratings = synthetic.synthetic_ratings()
  split = split_lib.split_ratings(ratings, method=method, test_fraction=0.3,
                                  heldout_users_fraction=0.25, seed=3)
  assert len(split.heldout_train) == 4 and len(split.train) == 12
  assert not set(split.train.users) & set(split.heldout_train.users)
  for train, test in ((split.train, split.test), (split.heldout_train, split.heldout_test)):
    np.testing.assert_array_equal(train.users, test.users)
    assert not _pairs(train) & _pairs(test)          # no rating on both sides
    for k in range(len(train)):
      assert len(train.items_of(k)) >= 1 and len(test.items_of(k)) >= 1
  # Every rating is somewhere, or counted as an item outside the vocabulary.
  placed = sum(p.num_ratings for p in (split.train, split.test, split.heldout_train,
                                       split.heldout_test))
  assert placed + sum(split.unknown_items.values()) == len(ratings)
  # The vocabulary is exactly the items of the training users' train ratings.
  np.testing.assert_array_equal(np.arange(split.num_items), np.unique(split.train.items))
  if method == 'temporal':
    for train, test in ((split.train, split.test), (split.heldout_train, split.heldout_test)):
      for k in range(len(train)):
        assert train.timestamps[train.rows(k)].max() < test.timestamps[test.rows(k)].min()


def test_split_is_deterministic_in_seed():
  ratings = synthetic.synthetic_ratings()
  a = split_lib.split_ratings(ratings, seed=1)
  b = split_lib.split_ratings(ratings, seed=1)
  c = split_lib.split_ratings(ratings, seed=2)
  assert _pairs(a.test) == _pairs(b.test) and _pairs(a.test) != _pairs(c.test)


def test_unknown_items_at_evaluation_are_skipped_and_counted():
  ratings = synthetic.synthetic_ratings()
  # Item 999 is rated once, by one user: in test it cannot be in the vocabulary.
  extra = data_lib.Ratings(
      user=np.append(ratings.user, 1), item=np.append(ratings.item, 999),
      rating=np.append(ratings.rating, 4.0).astype(np.float32),
      timestamp=np.append(ratings.timestamp, 9_999_999), titles={}, source='x')
  split = split_lib.split_ratings(extra, method='temporal', heldout_users_fraction=0.0)
  assert split.unknown_items['test'] == 1
  assert 999 not in split.item_ids


def test_ranking_metrics_match_hand_computed_cases():
  # Positive scores 0.8; negatives: two above, one tie (counts against), one below.
  rank = ranking.rank_of_positive(0.8, np.array([0.9, 0.95, 0.8, 0.1]))
  assert rank == 3
  assert ranking.hit_rate(rank, 3) == 0.0 and ranking.hit_rate(rank, 4) == 1.0
  assert ranking.ndcg(rank, 10) == pytest.approx(1 / np.log2(5))
  assert ranking.ndcg(0, 10) == 1.0 and ranking.ndcg(10, 10) == 0.0
  # Top-k skips excluded items; recall counts relevant items found.
  top = ranking.top_k(np.array([0.1, 0.9, 0.5, 0.7, 0.3]), 3, exclude=[1])
  np.testing.assert_array_equal(top, [3, 2, 4])
  assert ranking.recall_at_k(top, [2, 0], 3) == 0.5
  assert ranking.recall_at_k(top, [4, 3, 2], 2) == pytest.approx(2 / 3)
  # The latest liked test item is the leave-one-out positive.
  assert ranking.leave_one_out_item(np.array([5, 6, 7]), np.array([4.0, 5.0, 2.0]),
                                    np.array([30, 20, 40])) == 5
  assert ranking.leave_one_out_item(np.array([5]), np.array([3.0]), np.array([1])) == -1
  negatives = ranking.sample_negatives(10, np.array([0, 1, 2]), count=5,
                                       rng=np.random.default_rng(0))
  assert len(set(negatives)) == 5 and not set(negatives) & {0, 1, 2}


def test_reconstruction_fits_a_users_ratings():
  rng = np.random.default_rng(0)
  params = params_lib.MFParams(item_factors=rng.normal(size=(30, 4)).astype(np.float32),
                               item_bias=np.zeros(30, np.float32), offset=3.0, l2=0.0)
  true_p = np.array([0.5, -0.3, 0.2, 0.1], np.float32)
  items = np.arange(20)
  ratings = (3.0 + params.item_factors[items] @ true_p).astype(np.float32)
  users = params_lib.reconstruct(params, [(items, ratings), (items[:0], ratings[:0])],
                                 lr=0.05, epochs=200, batch_size=8)
  np.testing.assert_allclose(users.p[0], true_p, atol=0.02)
  assert abs(users.b_u[0]) < 0.02 and users.s is None  # a rating-only model
  assert not users.p[1].any() and users.b_u[1] == 0  # no ratings: nothing to rebuild


def test_negatives_are_unrated_items_deterministic_in_the_seed():
  rated = np.array([0, 3, 4, 9], np.int32)
  ratings = np.array([4.0, 2.0, 5.0, 3.5], np.float32)
  def draw(seed, user, round_num=None, k=2.0):
    return params_lib.with_negatives(rated, ratings, num_items=40, negatives_per_rating=k,
                                     rng=params_lib.negatives_rng(seed, user, round_num))
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
  alone = params_lib.reconstruct(params, [(items, ratings)], lr=0.05, epochs=5, batch_size=20,
                                 implicit_weight=10.0)
  examples = params_lib.with_negatives(items, ratings, num_items=30, negatives_per_rating=1.0,
                                       rng=np.random.default_rng(1))
  mixed = params_lib.reconstruct(params, [examples], lr=0.05, epochs=5, batch_size=20,
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
  """params.reconstruct takes the steps TFF's reconstruction takes: plain SGD
  on the local variables of model.MatrixFactorization under model.RatingLoss."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tff_rec import model as model_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  params = _two_head_params(rng, num_items=25, dim=3)
  items, targets, is_rating = params_lib.with_negatives(
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
  users = params_lib.reconstruct(params, [(items, targets, is_rating)], lr=lr, epochs=epochs,
                                 batch_size=batch_size, implicit_weight=weight)
  np.testing.assert_allclose(users.p[0], local[0].numpy()[0], atol=1e-5)
  np.testing.assert_allclose(users.b_u[0], local[1].numpy()[0, 0], atol=1e-5)
  np.testing.assert_allclose(users.s[0], local[2].numpy()[0], atol=1e-5)
  assert np.abs(users.s[0]).max() > 0.01  # the implicit head did move

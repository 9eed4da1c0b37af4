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
  p, b_u = params_lib.reconstruct(params, [(items, ratings), (items[:0], ratings[:0])],
                                  lr=0.05, epochs=200, batch_size=8)
  np.testing.assert_allclose(p[0], true_p, atol=0.02)
  assert abs(b_u[0]) < 0.02
  assert not p[1].any() and b_u[1] == 0  # no ratings: nothing to rebuild


def test_negatives_are_unrated_items_deterministic_in_the_seed():
  rated = np.array([0, 3, 4, 9], np.int32)
  ratings = np.array([4.0, 2.0, 5.0, 3.5], np.float32)
  def draw(seed, user, round_num=None, k=2.0):
    return params_lib.with_negatives(rated, ratings, num_items=40, negatives_per_rating=k,
                                     negative_weight=0.1,
                                     rng=params_lib.negatives_rng(seed, user, round_num))
  items, targets, weights, is_rating = draw(0, 7)
  real = is_rating == 1
  np.testing.assert_array_equal(np.sort(items[real]), rated)
  np.testing.assert_array_equal(targets[real][np.argsort(items[real])], ratings)
  np.testing.assert_array_equal(weights[real], 1.0)
  negatives = items[~real]
  assert len(negatives) == 8 == len(set(negatives.tolist()))
  assert not set(negatives.tolist()) & set(rated.tolist())
  assert (targets[~real] == params_lib.NEGATIVE_TARGET).all()
  np.testing.assert_allclose(weights[~real], 0.1)
  for a, b in zip(draw(0, 7), (items, targets, weights, is_rating)):
    np.testing.assert_array_equal(a, b)
  for other in (draw(1, 7), draw(0, 8), draw(0, 7, round_num=0)):
    assert set(other[0][other[3] == 0].tolist()) != set(negatives.tolist())
  # Never more than the unrated items; none when turned off.
  assert (draw(0, 7, k=100.0)[3] == 0).sum() == 36
  assert (draw(0, 7, k=0.0)[3] == 0).sum() == 0


def test_weighted_reconstruction_follows_the_weights():
  rng = np.random.default_rng(0)
  params = params_lib.MFParams(item_factors=rng.normal(size=(30, 4)).astype(np.float32),
                               item_bias=np.zeros(30, np.float32), offset=3.0, l2=0.01)
  items = np.arange(10)
  ratings = rng.uniform(1, 5, size=10).astype(np.float32)
  plain = params_lib.reconstruct(params, [(items, ratings)], lr=0.05, epochs=5, batch_size=4)
  ones = params_lib.reconstruct(params, [(items, ratings, np.ones(10, np.float32))],
                                lr=0.05, epochs=5, batch_size=4)
  np.testing.assert_array_equal(plain[0], ones[0])
  # Weighted examples with target 0 pull the user's bias down.
  all_items = np.concatenate([items, np.arange(10, 20)])
  targets = np.concatenate([ratings, np.zeros(10, np.float32)])
  heavy = params_lib.reconstruct(
      params, [(all_items, targets, np.r_[np.ones(10), np.full(10, 0.5)].astype(np.float32))],
      lr=0.05, epochs=5, batch_size=4)
  assert heavy[1][0] < plain[1][0]

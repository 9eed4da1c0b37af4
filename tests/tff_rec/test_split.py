"""tff_rec.split: per-user train/test parts, held-out users, the item vocabulary."""

import numpy as np
import pytest

from tff_common import errors
from tff_rec import config as config_lib
from tff_rec import data as data_lib
from tff_rec import split as split_lib
from tff_rec import synthetic


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


def _ratings(rows, source='r.csv'):
  """Ratings from (user, item) pairs, at increasing times."""
  users, items = zip(*rows)
  return data_lib.Ratings(user=np.array(users, np.int64), item=np.array(items, np.int64),
                          rating=np.full(len(rows), 4.0, np.float32),
                          timestamp=np.arange(len(rows), dtype=np.int64), titles={},
                          source=source)


@pytest.mark.parametrize('rows, kwargs, message', [
    # A single user: its test items are never in the vocabulary (test RMSE nan before).
    ([(1, 100), (1, 101), (1, 102)], {},
     'r.csv: 1 user, 1 of them with 2 or more ratings; expected at least 2 users with 2 or '
     'more ratings (one to train on, one to test on)'),
    # Every user rated once: nothing can go to test.
    ([(1, 100), (2, 100), (3, 101)], {},
     'r.csv: 3 users, 0 of them with 2 or more ratings; expected at least 2 users'),
    ([(1, 100), (1, 101), (2, 100), (2, 101)], {'heldout_users_fraction': 0.9},
     'r.csv: holding out 2 of 2 users (--heldout_users_fraction=0.9) leaves no training users'),
    # Two users with no item in common: every test rating is outside the vocabulary.
    ([(1, 100), (1, 101), (2, 102), (2, 103)], {'heldout_users_fraction': 0.0},
     'r.csv: the split leaves no test rating to evaluate on: the 2 test ratings of the 2 '
     'training users are all of items outside the vocabulary'),
    # The users with two ratings are held out; the training users have one each.
    ([(1, 100), (1, 101), (2, 100), (2, 101), (3, 100), (4, 101)],
     {'heldout_users_fraction': 0.5, 'seed': 5},  # seed 5 holds out users 1 and 2
     'the split leaves no test rating to evaluate on: none of the 2 training users has 2 or more '
     'ratings'),
], ids=['single-user', 'one-rating-each', 'all-held-out', 'no-shared-items',
        'training-users-rate-once'])
def test_degenerate_populations_are_one_clear_error(rows, kwargs, message):
  with pytest.raises(errors.InputError) as raised:
    split_lib.split_ratings(_ratings(rows), **kwargs)
  assert message in str(raised.value)


def test_load_and_split_reports_duplicates_and_empty_heldout_metrics(tmp_path):
  ratings = synthetic.synthetic_ratings()
  path = synthetic.write(ratings, str(tmp_path / 'ml'), 'ml-100k')
  with open(path, 'a') as f:   # user 1 rates its first item again, later
    f.write(f'1\t{ratings.item[0]}\t1\t9999999\n')
  lines = []
  split = split_lib.load_and_split(config_lib.DataConfig(data=path, heldout_users_fraction=0.01),
                                   log=lines.append)
  assert 'data: dropped 1 duplicate ratings (a user rating an item again): kept the latest of ' \
         'each' in lines
  assert any(line.startswith('held-out users: 0, with no test rating') for line in lines)
  placed = sum(p.num_ratings for p in (split.train, split.test, split.heldout_train,
                                       split.heldout_test))
  assert placed + sum(split.unknown_items.values()) == len(ratings)


@pytest.mark.parametrize('content, message', [
    ('', 'no ratings found'),
    ('1\t100\t4\t10\n1\t101\t4\t11\n', '1 user, 1 of them with 2 or more ratings'),
])
def test_load_and_split_stops_on_degenerate_files(tmp_path, content, message):
  path = tmp_path / 'u.data'
  path.write_text(content)
  with pytest.raises(errors.InputError, match=message):
    split_lib.load_and_split(config_lib.DataConfig(data=str(path)), log=lambda line: None)

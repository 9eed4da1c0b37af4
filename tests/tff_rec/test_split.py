"""tff_rec.split: per-user train/test parts, held-out users, the item vocabulary."""

import numpy as np
import pytest

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

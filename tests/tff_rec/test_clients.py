"""tff_rec.clients: per-user datasets built on demand, per-round shuffles and unrated items."""

import numpy as np

from tff_rec import clients


def test_client_data_builds_each_users_dataset_on_demand(tiny_split):
  part = tiny_split.train
  data = clients.client_data(part)
  assert data.client_ids == [str(u) for u in part.users]
  k = 2
  cid = str(part.users[k])
  examples = list(data.create_tf_dataset_for_client(cid).as_numpy_iterator())
  np.testing.assert_array_equal([e['x']['item'] for e in examples], part.items_of(k))
  np.testing.assert_array_equal([e['y'][0] for e in examples], part.ratings_of(k))
  # Per-round batches: a pure function of (seed, round, user), a permutation of the user's items.
  fn = clients.training_data_fn(part, batch_size=4, seed=0)
  def order(round_num):
    return np.concatenate([b['x']['item'] for b in fn([cid], round_num)[0].as_numpy_iterator()])
  np.testing.assert_array_equal(order(3), order(3))
  assert sorted(order(3)) == sorted(part.items_of(k)) and not np.array_equal(order(3), order(4))


def test_training_negatives_are_unrated_items_drawn_per_round(tiny_split):
  part = tiny_split.train
  k = 2
  cid = str(part.users[k])
  rated = set(part.items_of(k).tolist())
  fn = clients.training_data_fn(part, batch_size=4, seed=0, num_items=tiny_split.num_items,
                                negatives_per_rating=1.0)
  def examples(round_num, fn=fn):
    batches = list(fn([cid], round_num)[0].as_numpy_iterator())
    return (np.concatenate([b['x']['item'] for b in batches]),
            np.concatenate([b['y'] for b in batches]))
  items, y = examples(3)
  real = y[:, 1] == 1
  # The ratings, unchanged, plus as many unrated items (is_rating 0).
  assert sorted(items[real].tolist()) == sorted(rated)
  negatives = items[~real]
  assert len(negatives) == len(rated) and len(set(negatives.tolist())) == len(negatives)
  assert not set(negatives.tolist()) & rated
  np.testing.assert_array_equal(y[~real, 1], 0.0)
  # A pure function of (seed, round, user): same round same draw, next round a fresh one.
  again, y_again = examples(3)
  np.testing.assert_array_equal(again, items)
  np.testing.assert_array_equal(y_again, y)
  later, y_later = examples(4)
  assert set(later[y_later[:, 1] == 0].tolist()) != set(negatives.tolist())
  other = clients.training_data_fn(part, batch_size=4, seed=1, num_items=tiny_split.num_items,
                                   negatives_per_rating=1.0)
  items_1, y_1 = examples(3, fn=other)
  assert set(items_1[y_1[:, 1] == 0].tolist()) != set(negatives.tolist())

"""Per-user train/test split, held-out users and the item vocabulary (Python, once).

Every user is one client. A fraction of users is held out of training entirely
(cold start: their embedding is rebuilt from their train ratings at evaluation
only). Every user's ratings are split into train and test, at random or by
time (latest ratings in test). The item vocabulary is the items rated in the
training users' train ratings; other items cannot be scored, so ratings of
them in test or held-out data are dropped and counted.

A population that cannot give a test RMSE (a single user, no user with two
ratings, every user held out, no test rating of a vocabulary item) raises
`InputError` here, before anything is written, rather than a NaN metric later.
"""

import dataclasses

import numpy as np

from tff_common import errors
from tff_common import progress
from tff_rec import data as data_lib

METHODS = ('random', 'temporal')


@dataclasses.dataclass
class UserRatings:
  """Ratings grouped by user (CSR): user k owns rows offsets[k]:offsets[k+1]."""
  users: np.ndarray       # raw user ids, int64, sorted
  offsets: np.ndarray     # int64, len(users) + 1
  items: np.ndarray       # dense item indices, int32
  ratings: np.ndarray     # float32
  timestamps: np.ndarray  # int64

  def __len__(self):
    return len(self.users)

  @property
  def num_ratings(self) -> int:
    return int(self.offsets[-1])

  def position(self, user) -> int:
    k = int(np.searchsorted(self.users, user))
    if k >= len(self.users) or self.users[k] != user:
      raise KeyError(user)
    return k

  def rows(self, k: int) -> slice:
    return slice(int(self.offsets[k]), int(self.offsets[k + 1]))

  def items_of(self, k: int) -> np.ndarray:
    return self.items[self.rows(k)]

  def ratings_of(self, k: int) -> np.ndarray:
    return self.ratings[self.rows(k)]

  def counts(self) -> np.ndarray:
    return np.diff(self.offsets)


@dataclasses.dataclass
class Split:
  """Everything training and evaluation need, in dense item indices."""
  item_ids: np.ndarray       # dense index -> raw item id
  train: UserRatings         # training users, train ratings (the clients)
  test: UserRatings          # training users, test ratings (same users, same order)
  heldout_train: UserRatings   # held-out users: ratings to reconstruct from
  heldout_test: UserRatings    # held-out users: ratings to evaluate on
  unknown_items: dict        # part name -> ratings dropped for items outside the vocabulary
  titles: dict               # raw item id -> title

  @property
  def num_items(self) -> int:
    return len(self.item_ids)

  def global_mean(self) -> float:
    return float(np.mean(self.train.ratings))

  def title(self, item_index: int) -> str:
    raw = int(self.item_ids[item_index])
    return self.titles.get(raw, f'item {raw}')


def _group(users, items, ratings, timestamps, user_ids) -> UserRatings:
  """CSR over `user_ids` (sorted) of rows already ordered by user."""
  positions = np.searchsorted(user_ids, users)
  counts = np.bincount(positions, minlength=len(user_ids))
  offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
  return UserRatings(users=np.asarray(user_ids, np.int64), offsets=offsets,
                     items=np.asarray(items, np.int32),
                     ratings=np.asarray(ratings, np.float32),
                     timestamps=np.asarray(timestamps, np.int64))


def split_ratings(ratings: data_lib.Ratings, *, method: str = 'random',
                  test_fraction: float = 0.2, heldout_users_fraction: float = 0.1,
                  seed: int = 0) -> Split:
  """Splits `ratings` by user into train/test parts and held-out users.

  Each user with at least two ratings puts round(n * test_fraction) of them,
  but at least one and at most n - 1, in test; a user with one rating keeps it
  in train.

  Args:
    ratings: All ratings, raw ids.
    method: 'random' (seeded per user) or 'temporal' (a user's latest ratings,
      ties broken by file order, go to test).
    test_fraction: Share of each user's ratings in test, in (0, 1).
    heldout_users_fraction: Share of users kept out of training, in [0, 1).
    seed: Seeds the random split and the choice of held-out users.
  """
  if method not in METHODS:
    raise ValueError(f'unknown split {method!r}; expected one of {", ".join(METHODS)}')
  if not 0 < test_fraction < 1:
    raise ValueError(f'test_fraction must be in (0, 1), got {test_fraction}')
  if not 0 <= heldout_users_fraction < 1:
    raise ValueError(f'heldout_users_fraction must be in [0, 1), got {heldout_users_fraction}')

  # Group rows by user, keeping file order within a user (stable sort).
  order = np.argsort(ratings.user, kind='stable')
  user, item = ratings.user[order], ratings.item[order]
  rating, stamp = ratings.rating[order], ratings.timestamp[order]
  user_ids, starts, counts = np.unique(user, return_index=True, return_counts=True)
  # A user's test ratings are scored on items other users train on, so the
  # smallest population with a test RMSE is two users with two ratings each.
  with_two = int(np.count_nonzero(counts >= 2))
  if with_two < 2:
    raise errors.InputError(
        f'{ratings.source}: {len(user_ids)} user{"" if len(user_ids) == 1 else "s"}, '
        f'{with_two} of them with 2 or more ratings; expected at least 2 users with 2 or '
        'more ratings (one to train on, one to test on)')

  is_test = np.zeros(len(user), dtype=bool)
  for k, (start, n) in enumerate(zip(starts, counts)):
    if n < 2:
      continue
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    if method == 'random':
      chosen = np.random.default_rng([seed, k]).permutation(n)[:n_test]
    else:
      chosen = np.argsort(stamp[start:start + n], kind='stable')[n - n_test:]
    is_test[start + chosen] = True

  rng = np.random.default_rng([seed, 1 << 20])
  num_heldout = int(round(len(user_ids) * heldout_users_fraction))
  if num_heldout >= len(user_ids):
    raise errors.InputError(
        f'{ratings.source}: holding out {num_heldout} of {len(user_ids)} users '
        f'(--heldout_users_fraction={heldout_users_fraction}) leaves no training users; '
        'expected a smaller fraction or more users')
  heldout_ids = np.sort(rng.choice(user_ids, size=num_heldout, replace=False))
  is_heldout = np.isin(user, heldout_ids)

  trains = ~is_test & ~is_heldout
  item_ids = np.unique(item[trains])
  dense = np.searchsorted(item_ids, item)
  known = (dense < len(item_ids)) & (item_ids[np.minimum(dense, len(item_ids) - 1)] == item)

  parts, unknown = {}, {}
  train_user_ids = np.setdiff1d(user_ids, heldout_ids)
  for name, mask, ids in (('train', trains, train_user_ids),
                          ('test', is_test & ~is_heldout, train_user_ids),
                          ('heldout_train', ~is_test & is_heldout, heldout_ids),
                          ('heldout_test', is_test & is_heldout, heldout_ids)):
    unknown[name] = int(np.count_nonzero(mask & ~known))
    keep = mask & known
    parts[name] = _group(user[keep], dense[keep], rating[keep], stamp[keep], ids)
  if not parts['test'].num_ratings:
    if unknown['test']:
      why = (f'the {unknown["test"]} test ratings of the {len(train_user_ids)} training users '
             'are all of items outside the vocabulary (the items of training users\' train '
             'ratings); expected more users rating the same items')
    else:
      why = (f'none of the {len(train_user_ids)} training users has 2 or more ratings; '
             'expected at least 2 training users with 2 or more ratings (lower '
             '--heldout_users_fraction or add users)')
    raise errors.InputError(f'{ratings.source}: the split leaves no test rating to '
                            f'evaluate on: {why}')
  return Split(item_ids=item_ids, unknown_items=unknown, titles=ratings.titles, **parts)


def load_and_split(config, log=progress.print_flushed) -> Split:
  """Loads the ratings of a `config.DataConfig` and splits them; reports what
  was skipped or dropped."""
  ratings = data_lib.load(config.data, skip_bad_lines=config.skip_bad_lines)
  log(f'data: {ratings.source}: {len(ratings):,} ratings, '
      f'{len(set(ratings.user.tolist())):,} users, {len(set(ratings.item.tolist())):,} items')
  if ratings.skipped_lines:
    log(f'data: skipped {ratings.skipped_lines:,} malformed lines (--skip_bad_lines)')
  if ratings.duplicate_ratings:
    log(f'data: dropped {ratings.duplicate_ratings:,} duplicate ratings (a user rating an '
        'item again): kept the latest of each')
  split = split_ratings(
      ratings, method=config.split, test_fraction=config.test_fraction,
      heldout_users_fraction=config.heldout_users_fraction, seed=config.seed)
  log(f'split ({config.split}): {len(split.train)} training users '
      f'({split.train.num_ratings:,} train / {split.test.num_ratings:,} test ratings), '
      f'{len(split.heldout_train)} held-out users; vocabulary {split.num_items:,} items')
  if not split.heldout_test.num_ratings and config.heldout_users_fraction > 0:
    # Reported, not an error: the held-out rows of the report stay empty.
    log(f'held-out users: {len(split.heldout_train)}, with no test rating of a vocabulary '
        f'item; held-out metrics are left empty (--heldout_users_fraction='
        f'{config.heldout_users_fraction})')
  dropped = {k: v for k, v in split.unknown_items.items() if v}
  if dropped:
    log('ratings of items outside the training vocabulary, skipped: ' +
        ', '.join(f'{k} {v:,}' for k, v in dropped.items()))
  return split

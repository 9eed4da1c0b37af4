"""Synthetic MovieLens-like ratings: a tiny table, MovieLens file writers, a lazy population.

For tests and benchmarks: low-rank ratings a model can learn, in any format
`tff_rec.data` reads (`synthetic_ratings`, `write`), and `SyntheticPopulation`,
any number of users (100k and more) made on demand, for the scale benchmark
(bench/rec_scale.py) and population studies.
"""

import collections
import collections.abc
import os

import numpy as np

from tff_rec import data as data_lib
from tff_rec import split as split_lib

NUM_USERS, NUM_ITEMS = 16, 24


def synthetic_ratings(seed: int = 0, *, num_users: int = NUM_USERS,
                      num_items: int = NUM_ITEMS) -> data_lib.Ratings:
  """Low-rank ratings (1..5 stars): each user rates 10-16 distinct items at distinct times."""
  rng = np.random.default_rng(seed)
  user_factors = rng.normal(size=(num_users, 2))
  item_factors = rng.normal(size=(num_items, 2))
  item_bias = rng.normal(scale=0.5, size=num_items)
  users, items, ratings, stamps = [], [], [], []
  for u in range(num_users):
    rated = rng.choice(num_items, size=rng.integers(10, 17), replace=False)
    for t, i in enumerate(rated):
      score = 3.5 + item_bias[i] + user_factors[u] @ item_factors[i]
      users.append(u + 1)
      items.append(100 + i)
      ratings.append(float(np.clip(np.round(score), 1, 5)))
      stamps.append(1_000_000 + 1000 * u + 7 * t)
  return data_lib.Ratings(
      user=np.array(users, np.int64), item=np.array(items, np.int64),
      rating=np.array(ratings, np.float32), timestamp=np.array(stamps, np.int64),
      titles={100 + i: f'Movie {i} (2000)' for i in range(num_items)}, source='synthetic')


def write(ratings: data_lib.Ratings, directory: str, fmt: str) -> str:
  """Writes `ratings` (and titles) in MovieLens format `fmt`; returns the ratings path."""
  os.makedirs(directory, exist_ok=True)
  rows = zip(ratings.user, ratings.item, ratings.rating, ratings.timestamp)
  if fmt == 'ml-100k':
    path = os.path.join(directory, 'u.data')
    lines = [f'{u}\t{i}\t{int(r)}\t{t}' for u, i, r, t in rows]
    titles = [f'{i}|{title}|01-Jan-2000||http://x|0|1' for i, title in ratings.titles.items()]
    title_path = os.path.join(directory, 'u.item')
  elif fmt == 'ml-1m':
    path = os.path.join(directory, 'ratings.dat')
    lines = [f'{u}::{i}::{int(r)}::{t}' for u, i, r, t in rows]
    titles = [f'{i}::{title}::Drama' for i, title in ratings.titles.items()]
    title_path = os.path.join(directory, 'movies.dat')
  else:
    path = os.path.join(directory, 'ratings.csv')
    lines = ['userId,movieId,rating,timestamp'] + [f'{u},{i},{r:.1f},{t}' for u, i, r, t in rows]
    titles = ['movieId,title,genres'] + [f'{i},"{title}, The",Drama'
                                         for i, title in ratings.titles.items()]
    title_path = os.path.join(directory, 'movies.csv')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(title_path, 'w', encoding='latin-1') as f:
    f.write('\n'.join(titles) + '\n')
  return path


class SyntheticPopulation:
  """A lazy MovieLens-like population: user k's ratings are made when asked for.

  Ground truth is low rank: `num_items` item factors and biases, held once
  (O(items) memory); user k's factors, number of ratings, items and split are
  drawn from a generator seeded by (seed, k) alone, so a user's ratings do not
  depend on the population size or on which other users were asked for, and
  nothing per user is kept (but a small cache of the last users asked for).
  Each user rates `min_ratings`..`max_ratings` distinct items (heavy-tailed,
  as MovieLens: most users near the minimum), popular items more often
  (Zipf-like popularity); `test_fraction` of them (at least one) are that
  user's test ratings, the rest their train ratings, in generation order.

  Quacks like a `split.Split` with no held-out users where the recommendation
  job needs one to train: `num_items`, `global_mean()`, and `train` / `test`,
  lazy views that quack like `split.UserRatings` (`users`, `len`, `position`,
  `items_of`, `ratings_of`); raw user ids are 1..num_users. So the job's own
  process and client data train on it unchanged; `client_ids()` is the lazy
  list of client ids for `tff_common.program.sample_clients`, and `sample(n)`
  materializes n users as a real `split.Split` for the job's evaluation.

  Example (the job's FedRecon on 100k users; a TFF runtime must be installed,
  e.g. `tff_common.runtime.install_execution_context()`):

    from tff_common import program
    from tff_rec import algorithms, clients, config, evaluation, synthetic
    from tff_rec import params as params_lib

    population = synthetic.SyntheticPopulation(100_000, num_items=1000, seed=0)
    train_config = config.TrainConfig(clients_per_round=50)
    process, layers = algorithms.build_process(population, train_config)
    client_data_fn = clients.training_data_fn(
        population.train, batch_size=train_config.examples_per_batch(),
        seed=train_config.seed, num_items=population.num_items,
        negatives_per_rating=train_config.negatives())
    ids = population.client_ids()
    state = process.initialize()
    for round_num in range(1, 11):
      sampled = program.sample_clients(ids, clients_per_round=50,
                                       seed=train_config.seed, round_num=round_num)
      state = process.next(state, client_data_fn(sampled, round_num)).state
    # Test RMSE on 500 users (the job's evaluation, on a materialized sample):
    held = population.sample(500)
    params = params_lib.from_weights(algorithms.trainable_weights(process, state),
                                     layers, l2=train_config.l2,
                                     implicit_l2=train_config.implicit_l2)
    users = evaluation.training_user_factors(params, held, train_config.recon())
    print(evaluation.rating_metrics(params, users, held.test)['rmse'])

  With `tff_common.program.run_training`, pass `client_ids=population.client_ids()`
  and the same `client_data_fn`.
  """

  # Users whose ratings stay cached (a round asks for a user's items, then ratings).
  CACHE_USERS = 256
  # Users whose ratings give `global_mean()` (the model's initial offset): a
  # fixed sample, so it costs the same for any population size.
  MEAN_USERS = 2000

  def __init__(self, num_users: int, *, num_items: int = 1000, seed: int = 0, dim: int = 3,
               min_ratings: int = 20, max_ratings: int = 100, test_fraction: float = 0.2,
               noise: float = 0.3):
    if num_users < 2:
      raise ValueError(f'num_users must be at least 2, got {num_users}')
    if not 0 < min_ratings <= max_ratings <= num_items:
      raise ValueError(f'expected 0 < min_ratings ({min_ratings}) <= max_ratings '
                       f'({max_ratings}) <= num_items ({num_items})')
    if not 0 < test_fraction < 1:
      raise ValueError(f'test_fraction must be in (0, 1), got {test_fraction}')
    self.num_users, self.num_items, self.seed = int(num_users), int(num_items), int(seed)
    self.dim, self.noise, self.test_fraction = dim, noise, test_fraction
    self.min_ratings, self.max_ratings = min_ratings, max_ratings
    # The items' ground truth depends on (seed, num_items) only, never on num_users.
    rng = np.random.default_rng([self.seed, 1 << 30])
    self.item_factors = rng.normal(scale=0.8, size=(num_items, dim)).astype(np.float32)
    self.item_bias = rng.normal(scale=0.4, size=num_items).astype(np.float32)
    popularity = 1.0 / (np.arange(num_items) + 10.0) ** 0.9
    self.popularity = rng.permutation(popularity / popularity.sum())
    self._cache = collections.OrderedDict()
    self._mean = None
    self.train = _LazyPart(self, 0)
    self.test = _LazyPart(self, 1)

  def __len__(self):
    return self.num_users

  def user(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """User k's (train items, train ratings, test items, test ratings): dense
    item indices int32 and stars float32, a pure function of (seed, k)."""
    if not 0 <= k < self.num_users:
      raise IndexError(f'user position {k} outside 0..{self.num_users - 1}')
    cached = self._cache.get(k)
    if cached is not None:
      self._cache.move_to_end(k)
      return cached
    rng = np.random.default_rng([self.seed, k])
    n = int(min(self.max_ratings, self.min_ratings + np.floor(rng.pareto(1.2) * 10)))
    items = rng.choice(self.num_items, size=n, replace=False, p=self.popularity)
    factors = rng.normal(scale=0.8, size=self.dim)
    score = (3.6 + rng.normal(scale=0.3) + self.item_bias[items] + self.item_factors[items] @ factors
             + rng.normal(scale=self.noise, size=n))
    stars = np.clip(np.round(score), 1, 5).astype(np.float32)
    is_test = np.zeros(n, bool)
    is_test[rng.permutation(n)[:max(1, int(round(n * self.test_fraction)))]] = True
    items = items.astype(np.int32)
    result = (items[~is_test], stars[~is_test], items[is_test], stars[is_test])
    self._cache[k] = result
    if len(self._cache) > self.CACHE_USERS:
      self._cache.popitem(last=False)
    return result

  def global_mean(self) -> float:
    """The mean train rating of the first `MEAN_USERS` users (all, if fewer)."""
    if self._mean is None:
      users = min(self.num_users, self.MEAN_USERS)
      kept = collections.OrderedDict(self._cache)
      self._mean = float(np.mean(np.concatenate([self.user(k)[1] for k in range(users)])))
      self._cache = kept  # the mean's users do not evict a round's users
    return self._mean

  def client_ids(self) -> '_ClientIds':
    """Every user's client id (str of the raw id), lazily: O(1) memory."""
    return _ClientIds(self.num_users)

  def sample(self, num_users: int, *, seed: int = 1) -> split_lib.Split:
    """`num_users` users drawn with `seed`, materialized as a `split.Split`
    (train/test of those users, no held-out users), for the job's evaluation
    (`tff_rec.evaluation`); same ratings as `train` / `test` give them."""
    num_users = min(num_users, self.num_users)
    chosen = np.sort(np.random.default_rng([self.seed, seed, 1 << 31]).choice(
        self.num_users, size=num_users, replace=False))
    parts = {name: [] for name in ('train', 'test')}
    for k in chosen:
      train_items, train_stars, test_items, test_stars = self.user(int(k))
      parts['train'].append((train_items, train_stars))
      parts['test'].append((test_items, test_stars))

    def grouped(rows):
      counts = [len(items) for items, _ in rows]
      return split_lib.UserRatings(
          users=chosen.astype(np.int64) + 1,
          offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
          items=np.concatenate([items for items, _ in rows]).astype(np.int32),
          ratings=np.concatenate([stars for _, stars in rows]).astype(np.float32),
          timestamps=np.zeros(sum(counts), np.int64))

    empty = split_lib.UserRatings(users=np.zeros(0, np.int64), offsets=np.zeros(1, np.int64),
                                  items=np.zeros(0, np.int32), ratings=np.zeros(0, np.float32),
                                  timestamps=np.zeros(0, np.int64))
    return split_lib.Split(
        item_ids=100 + np.arange(self.num_items, dtype=np.int64),
        train=grouped(parts['train']), test=grouped(parts['test']),
        heldout_train=empty, heldout_test=empty,
        unknown_items={'train': 0, 'test': 0, 'heldout_train': 0, 'heldout_test': 0},
        titles={})

  def nbytes(self) -> int:
    """Bytes of the items' ground truth, independent of `num_users`. Besides
    it the population holds at most `CACHE_USERS` users' ratings (under 0.5 MB)."""
    return self.item_factors.nbytes + self.item_bias.nbytes + self.popularity.nbytes


class _LazyPart:
  """The train (part 0) or test (part 1) ratings of a `SyntheticPopulation`,
  with `split.UserRatings`'s reading interface."""

  def __init__(self, population: SyntheticPopulation, part: int):
    self._population = population
    self._part = part
    self.users = range(1, population.num_users + 1)   # raw ids: O(1) memory

  def __len__(self):
    return self._population.num_users

  def position(self, user) -> int:
    k = int(user) - 1
    if not 0 <= k < self._population.num_users or k + 1 != user:
      raise KeyError(user)
    return k

  def items_of(self, k: int) -> np.ndarray:
    return self._population.user(k)[2 * self._part]

  def ratings_of(self, k: int) -> np.ndarray:
    return self._population.user(k)[2 * self._part + 1]


class _ClientIds(collections.abc.Sequence):
  """'1'..'n' as a read-only sequence that holds nothing per client."""

  def __init__(self, n: int):
    self._n = n

  def __len__(self):
    return self._n

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [str(j + 1) for j in range(*i.indices(self._n))]
    if i < 0:
      i += self._n
    if not 0 <= i < self._n:
      raise IndexError(i)
    return str(i + 1)

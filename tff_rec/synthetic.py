"""Tiny synthetic MovieLens-like ratings, and writers of the three MovieLens file formats.

For tests and benchmarks: low-rank ratings a model can learn, in any format
`tff_rec.data` reads.
"""

import os

import numpy as np

from tff_rec import data as data_lib

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

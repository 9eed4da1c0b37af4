"""Splitting one data set into clients: IID, size skew, label skew, feature skew.

Pure NumPy, run once by the simulation before training; each function returns a
list of disjoint index arrays (one per client) that together cover every row,
deterministic in `seed`.
"""

from collections.abc import Sequence

import numpy as np


def _check(num_rows: int, num_clients: int):
  if num_clients < 1:
    raise ValueError(f'need at least one client, got {num_clients}')
  if num_rows < num_clients:
    raise ValueError(f'{num_rows} rows cannot fill {num_clients} clients')


def iid(num_rows: int, num_clients: int, *, seed: int) -> list[np.ndarray]:
  """Random equal-size shards."""
  _check(num_rows, num_clients)
  order = np.random.default_rng(seed).permutation(num_rows)
  return [np.sort(part) for part in np.array_split(order, num_clients)]


def power_law_sizes(num_rows: int, num_clients: int, *, smallest_fraction: float = 0.02,
                    min_rows: int = 1) -> np.ndarray:
  """Client sizes falling geometrically from the largest to `smallest_fraction`.

  Sizes sum to `num_rows`; the smallest client holds about `smallest_fraction`
  of all rows (exactly, up to rounding, when that leaves room for the others).
  """
  _check(num_rows, num_clients)
  if num_clients == 1:
    return np.array([num_rows])
  # Geometric weights r^i with the last one equal to smallest_fraction of the
  # total: solve for r by bisection (the share of the last is monotone in r).
  def last_share(r):
    w = r ** np.arange(num_clients)
    return w[-1] / w.sum()
  lo, hi = 1e-6, 1.0
  target = min(smallest_fraction, 1.0 / num_clients)
  for _ in range(100):
    mid = (lo + hi) / 2
    if last_share(mid) < target:
      lo = mid
    else:
      hi = mid
  weights = lo ** np.arange(num_clients)
  sizes = np.maximum(np.floor(weights / weights.sum() * num_rows).astype(int), min_rows)
  sizes[0] += num_rows - sizes.sum()
  return sizes


def size_skew(num_rows: int, num_clients: int, *, seed: int,
              smallest_fraction: float = 0.02) -> list[np.ndarray]:
  """Random shards of power-law sizes (largest first)."""
  sizes = power_law_sizes(num_rows, num_clients, smallest_fraction=smallest_fraction)
  order = np.random.default_rng(seed).permutation(num_rows)
  bounds = np.cumsum(sizes)[:-1]
  return [np.sort(part) for part in np.split(order, bounds)]


def label_skew(labels: Sequence, num_clients: int, *, alpha: float, seed: int,
               min_rows: int = 2) -> list[np.ndarray]:
  """Dirichlet(alpha) class proportions per client (Hsu et al. 2019).

  For each class, its rows are dealt to clients in proportions drawn from
  Dirichlet(alpha): small alpha gives clients dominated by one class, large
  alpha approaches IID. Draws are repeated (deterministically) until every
  client has at least `min_rows` rows.
  """
  labels = np.asarray(labels)
  _check(len(labels), num_clients)
  if alpha <= 0:
    raise ValueError(f'alpha must be positive, got {alpha}')
  rng = np.random.default_rng(seed)
  classes = np.unique(labels)
  for _ in range(1000):
    parts = [[] for _ in range(num_clients)]
    for c in classes:
      rows = rng.permutation(np.flatnonzero(labels == c))
      shares = rng.dirichlet(np.full(num_clients, alpha))
      cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
      for client, chunk in enumerate(np.split(rows, cuts)):
        parts[client].extend(chunk.tolist())
    if min(len(p) for p in parts) >= min_rows:
      return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
  raise ValueError(f'could not give every client {min_rows} rows with alpha={alpha}; '
                   'raise alpha or lower the number of clients')


def feature_skew(groups: Sequence, num_clients: int) -> tuple[list[np.ndarray], list[list]]:
  """Clients defined by a grouping column (e.g. region, age band).

  The distinct group values, largest first, are dealt to clients so that each
  client gets whole groups and client sizes stay as even as whole groups allow
  (largest group to the currently smallest client).

  Returns:
    (index arrays, the group values each client holds).
  """
  groups = np.asarray(groups, dtype=object)
  _check(len(groups), num_clients)
  values, counts = np.unique(groups.astype(str), return_counts=True)
  if len(values) < num_clients:
    raise ValueError(f'the grouping column has {len(values)} distinct values, '
                     f'fewer than {num_clients} clients')
  order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))
  members = [[] for _ in range(num_clients)]
  sizes = np.zeros(num_clients, dtype=int)
  for i in order:
    client = int(np.argmin(sizes))
    members[client].append(values[i])
    sizes[client] += counts[i]
  as_str = groups.astype(str)
  parts = [np.flatnonzero(np.isin(as_str, m)) for m in members]
  return parts, members


def stratified_split(labels: Sequence, *, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Train/test positions within one client, keeping class proportions.

  Every class with at least two rows puts at least one row in each side.
  """
  labels = np.asarray(labels)
  if not 0 < test_fraction < 1:
    raise ValueError(f'test_fraction must be in (0, 1), got {test_fraction}')
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    rows = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(len(rows) * test_fraction))
    if len(rows) >= 2:
      n_test = min(max(n_test, 1), len(rows) - 1)
    test.extend(rows[:n_test].tolist())
    train.extend(rows[n_test:].tolist())
  return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))

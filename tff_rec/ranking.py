"""Ranking metrics: HR@k and NDCG@k against sampled negatives, full-catalogue Recall@k.

Pure NumPy, run by the evaluation after training. Relevance is a rating of at
least `LIKED` (4 stars). Ties are broken against the held-out item (it ranks
below every item with an equal score), so a constant scorer earns nothing.
"""

from collections.abc import Sequence

import numpy as np

LIKED = 4.0


def rank_of_positive(positive_score: float, negative_scores: np.ndarray) -> int:
  """0-based rank of the positive among positive + negatives (ties count against it)."""
  return int(np.count_nonzero(np.asarray(negative_scores) >= positive_score))


def hit_rate(rank: int, k: int) -> float:
  return 1.0 if rank < k else 0.0


def ndcg(rank: int, k: int) -> float:
  """NDCG@k with one relevant item: 1 / log2(rank + 2) inside the top k."""
  return 1.0 / np.log2(rank + 2) if rank < k else 0.0


def sample_negatives(num_items: int, exclude: np.ndarray, *, count: int,
                     rng: np.random.Generator) -> np.ndarray:
  """`count` distinct items not in `exclude`, uniformly (fewer if the catalogue
  runs out), sorted.

  Used for the evaluation's negatives and for the unrated items a device
  samples for the implicit head (`reconstruction.with_negatives`).
  """
  if count <= 0:
    return np.zeros(0, np.int32)
  mask = np.ones(num_items, bool)
  mask[np.asarray(exclude, np.int64)] = False
  candidates = np.flatnonzero(mask)
  count = min(count, len(candidates))
  return np.sort(rng.choice(candidates, size=count, replace=False)).astype(np.int32)


def top_k(scores: np.ndarray, k: int, *, exclude: np.ndarray = ()) -> np.ndarray:
  """Indices of the k best scores, best first, skipping `exclude` (ties: lower index)."""
  scores = np.array(scores, dtype=np.float64)
  scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
  k = min(k, int(np.count_nonzero(np.isfinite(scores))))
  candidates = np.argpartition(-scores, k - 1)[:k] if k else np.array([], np.int64)
  return candidates[np.lexsort((candidates, -scores[candidates]))]


def recall_at_k(recommended: Sequence[int], relevant: Sequence[int], k: int) -> float:
  """Share of the relevant items found in the first k recommendations."""
  relevant = set(int(i) for i in relevant)
  if not relevant:
    raise ValueError('recall needs at least one relevant item')
  hits = len(relevant.intersection(int(i) for i in list(recommended)[:k]))
  return hits / len(relevant)


def leave_one_out_item(items: np.ndarray, ratings: np.ndarray, timestamps: np.ndarray) -> int:
  """The held-out positive of a user: their latest liked test item (-1 if none).

  Ties in time go to the later row.
  """
  liked = np.flatnonzero(ratings >= LIKED)
  if len(liked) == 0:
    return -1
  latest = liked[np.lexsort((liked, timestamps[liked]))[-1]]
  return int(items[latest])

"""tff_rec.ranking: HR, NDCG, top-k, recall, the leave-one-out positive, negatives."""

import numpy as np
import pytest

from tff_rec import ranking


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

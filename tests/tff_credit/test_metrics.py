"""KS, Gini, AUC, Brier and PSI against hand-computed cases."""

import numpy as np
import pytest

from tff_credit import metrics


def test_auc_and_gini_by_hand():
  # Pairs (bad, good): bad scores 0.9, 0.4; good scores 0.5, 0.1.
  # 0.9 beats both goods, 0.4 beats 0.1 only: 3 of 4 pairs -> AUC 0.75.
  labels = [1, 1, 0, 0]
  scores = [0.9, 0.4, 0.5, 0.1]
  assert metrics.auc(labels, scores) == pytest.approx(0.75)
  assert metrics.gini(0.75) == pytest.approx(0.5)
  # Ties count one half: every score equal -> 0.5.
  assert metrics.auc([1, 0, 1, 0], [0.3] * 4) == pytest.approx(0.5)


def test_ks_by_hand():
  # Thresholds from the top: >=0.9: TPR 1/2, FPR 0 -> gap 0.5;
  # >=0.5: TPR 1/2, FPR 1/2 -> 0; >=0.4: TPR 1, FPR 1/2 -> 0.5; >=0.1: 0.
  value, threshold = metrics.ks([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
  assert value == pytest.approx(0.5)
  assert threshold == pytest.approx(0.9)
  perfect, _ = metrics.ks([1, 1, 0, 0], [0.8, 0.7, 0.2, 0.1])
  assert perfect == pytest.approx(1.0)


def test_brier_and_log_loss_by_hand():
  assert metrics.brier([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
  assert metrics.log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)


def test_psi_by_hand():
  # Expected: 10 values, deciles put one value in each bin (shares 0.1).
  expected = np.arange(10) + 0.5
  assert metrics.psi(expected, expected) == pytest.approx(0.0)
  # Actual: all mass in the first five bins, 0.2 each; the other five bins
  # are empty and floored at 1e-4.
  actual = np.repeat(expected[:5], 2)
  want = 5 * (0.2 - 0.1) * np.log(0.2 / 0.1) + 5 * (1e-4 - 0.1) * np.log(1e-4 / 0.1)
  assert metrics.psi(expected, actual, bins=10) == pytest.approx(want)


def test_one_class_sample_is_na_not_nan():
  result = metrics.score_metrics([0, 0, 0], [0.2, 0.3, 0.4], train_scores=[0.1, 0.5])
  assert result['auc'] is None and result['ks'] is None and result['gini'] is None
  assert result['accuracy'] is None
  assert any('only "good"' in note for note in result['notes'])
  assert result['brier'] == pytest.approx((0.04 + 0.09 + 0.16) / 3)


def test_roc_curve_ends_at_one_one():
  fpr, tpr, _ = metrics.roc_curve([1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.3, 0.3])
  assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
  assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
  assert np.trapz(tpr, fpr) == pytest.approx(metrics.auc([1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.3, 0.3]))


def test_auc_standard_error_by_hand():
  # A = 0.8, 50 + 50 cases: Q1 = 0.8/1.2, Q2 = 1.28/1.8,
  # var = (0.16 + 49 (Q1 - 0.64) + 49 (Q2 - 0.64)) / 2500 = 4.9511 / 2500.
  assert metrics.auc_standard_error(0.8, 50, 50) == pytest.approx(np.sqrt(4.95111 / 2500), rel=1e-4)
  assert metrics.auc_standard_error(None, 5, 5) is None
  small = metrics.auc_standard_error(0.8, 6, 16)
  assert small > 3 * metrics.auc_standard_error(0.8, 300, 800)

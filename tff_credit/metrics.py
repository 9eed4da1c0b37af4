"""The credit industry's model metrics, in NumPy: AUC, KS, Gini, Brier, PSI.

Scores are predicted probabilities of the positive class ("bad"); labels are
0/1 with 1 = bad. Runs wherever a model is scored (each bank on its own test
rows, or the report over the pooled test set).

AUC and KS need both classes; on a one-class sample they are undefined and
`score_metrics` returns None for them with the reason in `notes`, never NaN.
"""

from typing import Optional

import numpy as np

_EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> Optional[float]:
  """Area under the ROC curve (Mann-Whitney U, ties counted as 1/2)."""
  labels = np.asarray(labels).astype(bool)
  n_pos, n_neg = labels.sum(), (~labels).sum()
  if n_pos == 0 or n_neg == 0:
    return None
  ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
  return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
  order = np.argsort(values, kind='mergesort')
  ranks = np.empty(len(values))
  sorted_values = values[order]
  start = 0
  for end in range(1, len(values) + 1):
    if end == len(values) or sorted_values[end] != sorted_values[start]:
      ranks[order[start:end]] = (start + end + 1) / 2  # 1-based mean rank
      start = end
  return ranks


def auc_standard_error(auc_value: Optional[float], n_pos: int, n_neg: int) -> Optional[float]:
  """Hanley & McNeil (1982) standard error of an AUC; how much a small test set can say.

  On a few dozen rows it is 0.05-0.10: per-bank AUC differences smaller than
  that are noise.
  """
  if auc_value is None or n_pos == 0 or n_neg == 0:
    return None
  a = auc_value
  q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
  variance = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
  return float(np.sqrt(max(variance, 0.0)))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(false positive rates, true positive rates, thresholds), thresholds falling.

  A threshold t classifies `score >= t` as bad; the first point is (0, 0).
  """
  labels = np.asarray(labels).astype(bool)
  scores = np.asarray(scores, dtype=np.float64)
  thresholds = np.unique(scores)[::-1]
  pos, neg = max(labels.sum(), 1), max((~labels).sum(), 1)
  order = np.argsort(-scores, kind='mergesort')
  sorted_scores, sorted_labels = scores[order], labels[order]
  # Counts at each distinct threshold: everything with score >= t.
  cut = np.searchsorted(-sorted_scores, -thresholds, side='right')
  tp = np.concatenate([[0], np.cumsum(sorted_labels)])[cut]
  fp = cut - tp
  return (np.concatenate([[0.0], fp / neg]), np.concatenate([[0.0], tp / pos]),
          np.concatenate([[np.inf], thresholds]))


def ks(labels: np.ndarray, scores: np.ndarray) -> tuple[Optional[float], Optional[float]]:
  """Kolmogorov-Smirnov statistic and the threshold where it is reached.

  KS = max over thresholds of |TPR - FPR|: the largest gap between the score
  distributions of bad and good applicants.
  """
  labels = np.asarray(labels).astype(bool)
  if labels.all() or not labels.any():
    return None, None
  fpr, tpr, thresholds = roc_curve(labels, scores)
  gap = np.abs(tpr - fpr)
  best = int(np.argmax(gap))
  return float(gap[best]), float(thresholds[best])


def gini(auc_value: Optional[float]) -> Optional[float]:
  return None if auc_value is None else 2.0 * auc_value - 1.0


def brier(labels: np.ndarray, scores: np.ndarray) -> float:
  return float(np.mean((np.asarray(scores, np.float64) - np.asarray(labels, np.float64)) ** 2))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
  p = np.clip(np.asarray(scores, np.float64), _EPS, 1 - _EPS)
  y = np.asarray(labels, np.float64)
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def psi(expected: np.ndarray, actual: np.ndarray, *, bins: int = 10) -> Optional[float]:
  """Population Stability Index of a score between two samples.

  Bins are the deciles of `expected` (e.g. the training scores); PSI =
  sum over bins of (a - e) * ln(a / e), with each share floored at 1e-4 so an
  empty bin counts as a large shift instead of an infinity. Rule of thumb:
  < 0.1 stable, 0.1-0.25 some shift, > 0.25 a major shift.
  """
  expected = np.asarray(expected, np.float64)
  actual = np.asarray(actual, np.float64)
  if len(expected) == 0 or len(actual) == 0:
    return None
  edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
  e = np.bincount(np.searchsorted(edges, expected, side='right'), minlength=len(edges) + 1) / len(expected)
  a = np.bincount(np.searchsorted(edges, actual, side='right'), minlength=len(edges) + 1) / len(actual)
  e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
  return float(np.sum((a - e) * np.log(a / e)))


def score_metrics(labels: np.ndarray, scores: np.ndarray,
                  train_scores: Optional[np.ndarray] = None) -> dict:
  """All report metrics of one model on one sample.

  Returns a dict with auc, auc_se (its standard error), ks, gini, brier, log_loss, accuracy (at the
  KS-optimal threshold), threshold, psi (train vs this sample, if
  `train_scores` is given), n, bad_rate, and `notes` explaining any None.
  """
  labels = np.asarray(labels).astype(np.int64).ravel()
  scores = np.asarray(scores, np.float64).ravel()
  notes = []
  auc_value = auc(labels, scores)
  ks_value, threshold = ks(labels, scores)
  if auc_value is None:
    only = 'bad' if labels.all() else 'good'
    notes.append(f'AUC, KS and Gini are undefined: the sample holds only "{only}" '
                 f'applicants ({len(labels)} rows)')
  if train_scores is not None and len(labels) < 100:
    notes.append(f'PSI over {len(labels)} rows is noisy (deciles of a few rows each)')
  accuracy = None if threshold is None else float(np.mean((scores >= threshold) == labels))
  return {
      'auc': auc_value,
      'auc_se': auc_standard_error(auc_value, int(labels.sum()), int((1 - labels).sum())),
      'ks': ks_value,
      'gini': gini(auc_value),
      'brier': brier(labels, scores),
      'log_loss': log_loss(labels, scores),
      'accuracy': accuracy,
      'threshold': threshold,
      'psi': None if train_scores is None else psi(train_scores, scores),
      'n': int(len(labels)),
      'bad_rate': float(labels.mean()) if len(labels) else None,
      'notes': notes,
  }

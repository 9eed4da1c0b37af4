"""Partitioners: sizes, label proportions, disjointness, determinism."""

import numpy as np
import pytest

from tff_common import partition


def _assert_cover(parts, n):
  joined = np.concatenate(parts)
  assert len(joined) == n and len(np.unique(joined)) == n  # disjoint and complete


def test_iid_equal_disjoint_deterministic():
  parts = partition.iid(103, 4, seed=1)
  _assert_cover(parts, 103)
  assert sorted(len(p) for p in parts) == [25, 26, 26, 26]
  again = partition.iid(103, 4, seed=1)
  assert all(np.array_equal(a, b) for a, b in zip(parts, again))
  other = partition.iid(103, 4, seed=2)
  assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_size_skew_smallest_near_two_percent():
  sizes = partition.power_law_sizes(4454, 5, smallest_fraction=0.02)
  assert sizes.sum() == 4454
  assert list(sizes) == sorted(sizes, reverse=True)
  assert abs(sizes[-1] / 4454 - 0.02) < 0.002
  parts = partition.size_skew(4454, 5, seed=0)
  _assert_cover(parts, 4454)
  assert [len(p) for p in parts] == list(sizes)


def test_label_skew_small_alpha_concentrates_classes():
  labels = np.repeat([0, 1], 500)
  skewed = partition.label_skew(labels, 5, alpha=0.1, seed=0)
  mild = partition.label_skew(labels, 5, alpha=100.0, seed=0)
  _assert_cover(skewed, 1000)
  _assert_cover(mild, 1000)
  def spread(parts):
    return np.std([labels[p].mean() for p in parts])
  assert spread(skewed) > 0.25 > 0.05 > spread(mild)
  again = partition.label_skew(labels, 5, alpha=0.1, seed=0)
  assert all(np.array_equal(a, b) for a, b in zip(skewed, again))
  with pytest.raises(ValueError):
    partition.label_skew(labels, 5, alpha=0.0, seed=0)


def test_feature_skew_keeps_groups_whole():
  groups = np.array(['a'] * 50 + ['b'] * 30 + ['c'] * 15 + ['d'] * 5, dtype=object)
  parts, members = partition.feature_skew(groups, 3)
  _assert_cover(parts, 100)
  for part, member in zip(parts, members):
    assert set(groups[part]) == set(member)
  assert sorted(sum(members, [])) == ['a', 'b', 'c', 'd']
  with pytest.raises(ValueError):
    partition.feature_skew(groups, 5)


def test_stratified_split_keeps_both_classes_on_both_sides():
  labels = np.array([0] * 30 + [1] * 3)
  train, test = partition.stratified_split(labels, test_fraction=0.25, seed=0)
  assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 33
  assert set(labels[train]) == {0, 1} and set(labels[test]) == {0, 1}
  assert len(test) == round(30 * 0.25) + 1

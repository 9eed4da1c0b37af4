"""tff_credit.banks: the per-bank splits (train, validation, test)."""

import numpy as np
import pytest

from tests.tff_credit.helpers import load
from tests.tff_credit.helpers import write_loans_csv
from tff_common import errors
from tff_credit import banks
from tff_credit import config


def test_validation_rows_come_from_training_rows_stratified_and_leave_test_rows_alone(tmp_path):
  table = load(write_loans_csv(tmp_path / 'loans.csv', rows=900))
  common = dict(num_banks=3, partition_name='size_skew', seed=2, test_fraction=0.25)
  plain = banks.make_banks(table, **common)
  split = banks.make_banks(table, val_fraction=0.2, **common)
  for before, after in zip(plain, split, strict=True):
    # The test rows are those of a run without validation.
    np.testing.assert_array_equal(before.test_rows, after.test_rows)
    assert len(before.val_rows) == 0
    # Train and validation partition the former training rows.
    assert not set(after.val_rows.tolist()) & set(after.train_rows.tolist())
    assert sorted(after.val_rows.tolist() + after.train_rows.tolist()) == sorted(
        before.train_rows.tolist())
    assert abs(len(after.val_rows) - 0.2 * len(before.train_rows)) <= 2
    # Stratified: both classes, at the bank's training bad rate (within a row per class).
    bad = table.labels[before.train_rows].mean()
    val_labels = table.labels[after.val_rows]
    assert 0 < val_labels.sum() < len(val_labels)
    assert abs(val_labels.sum() - bad * len(val_labels)) <= 1
  # Seeded: the same split again; another seed, another one.
  again = banks.make_banks(table, val_fraction=0.2, **common)
  assert all(np.array_equal(a.val_rows, b.val_rows) for a, b in zip(split, again))
  other = banks.make_banks(table, val_fraction=0.2, **{**common, 'seed': 3})
  assert not np.array_equal(split[0].val_rows, other[0].val_rows)


def test_validation_flags_are_checked_and_old_settings_read_without_validation():
  for bad, message in (
      (config.DataConfig(val_fraction=1.0), '--val_fraction=1.0: expected a number in [0, 1)'),
      (config.TrainConfig(l2=-0.1), '--l2=-0.1: expected a number in [0, inf)'),
      (config.TrainConfig(select='first'), "--select='first': expected one of best, last")):
    with pytest.raises(errors.InputError) as raised:
      bad.check()
    assert str(raised.value) == message
  # A run directory written before validation splits and L2: read as it was trained.
  stored = config.settings(config.DataConfig(), config.AlgorithmConfig(), config.TrainConfig(),
                           data_sha256='x')
  del stored['data']['val_fraction'], stored['train']['l2'], stored['train']['select']
  data, _, train, _ = config.from_settings(stored)
  assert (data.val_fraction, train.l2) == (0.0, 0.0)
  assert config.selection(data, train) == 'last'
  assert config.selection(config.DataConfig(), config.TrainConfig()) == 'best'
  assert config.selection(config.DataConfig(), config.TrainConfig(select='last')) == 'last'

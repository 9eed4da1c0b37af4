"""Dealing one credit table out to K simulated banks, each with its own split.

Runs once in the simulation's orchestrator. After this, every bank's rows are
only touched by that bank's own computations (statistics, training, scoring),
except for the pooled upper-bound baseline, which exists to be compared with.

Partitions (`tff_common.partition`):
  iid         equal random shares;
  size_skew   power-law sizes, the smallest bank ~2% of rows (banks are named
              largest first: bank_1 is the biggest);
  label_skew  Dirichlet(alpha) over class proportions per bank;
  feature_skew  regional banks: each bank holds whole groups of a column
              (`skew_column`, default Home), or of its quantile bands if numeric.
Each bank then splits its own rows into train and test, stratified by label;
the pooled test set is the union of the banks' test sets. With a validation
fraction, each bank then splits its training rows (never its test rows) into
train and validation, stratified and seeded too: the test rows are those of a
run without validation.
"""

import dataclasses

import numpy as np

from tff_common import partition
from tff_common.errors import InputError
from tff_credit import data as data_lib

PARTITIONS = ('iid', 'size_skew', 'label_skew', 'feature_skew')
# Keeps the validation split's generator apart from the test split's.
_VAL_STREAM = 7


@dataclasses.dataclass
class Bank:
  name: str
  train_rows: np.ndarray   # indices into the Table
  test_rows: np.ndarray
  description: str = ''
  # Held out of training for model selection; empty without validation.
  val_rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))


def make_banks(
    table: data_lib.Table,
    *,
    num_banks: int,
    partition_name: str,
    seed: int,
    test_fraction: float = 0.25,
    val_fraction: float = 0.0,
    alpha: float = 0.5,
    skew_column: str = 'Home',
    smallest_fraction: float = 0.02,
) -> list[Bank]:
  """Partitions `table` into banks, then splits each bank train/test, then
  (`val_fraction` > 0) each bank's train rows into train/validation."""
  n = table.num_rows
  if num_banks < 1:
    raise InputError(f'--banks must be at least 1, got {num_banks}')
  try:
    if partition_name == 'iid':
      parts = partition.iid(n, num_banks, seed=seed)
      notes = [''] * num_banks
    elif partition_name == 'size_skew':
      parts = partition.size_skew(n, num_banks, seed=seed, smallest_fraction=smallest_fraction)
      notes = [''] * num_banks
    elif partition_name == 'label_skew':
      parts = partition.label_skew(table.labels, num_banks, alpha=alpha, seed=seed, min_rows=10)
      notes = [''] * num_banks
    elif partition_name == 'feature_skew':
      groups = _groups(table, skew_column, num_banks)
      parts, members = partition.feature_skew(groups, num_banks)
      notes = [f'{skew_column} in {{{", ".join(m)}}}' for m in members]
    else:
      raise InputError(f'--partition must be one of {", ".join(PARTITIONS)}, got {partition_name!r}')
  except InputError:
    raise
  except ValueError as e:
    raise InputError(f'cannot partition {n} rows into {num_banks} banks: {e}') from None

  banks = []
  for i, (rows, note) in enumerate(zip(parts, notes), start=1):
    local_train, local_test = partition.stratified_split(
        table.labels[rows], test_fraction=test_fraction, seed=seed * 1000 + i)
    train_rows, val_rows = rows[local_train], np.zeros(0, np.int64)
    if val_fraction > 0:
      # Its own seed, so the test split above is that of a run without validation.
      local_fit, local_val = partition.stratified_split(
          table.labels[train_rows], test_fraction=val_fraction, seed=[seed, i, _VAL_STREAM])
      train_rows, val_rows = train_rows[local_fit], train_rows[local_val]
    banks.append(Bank(name=f'bank_{i}', train_rows=train_rows,
                      test_rows=rows[local_test], description=note, val_rows=val_rows))
  return banks


def _groups(table: data_lib.Table, column: str, num_banks: int) -> np.ndarray:
  values = table.column(column)
  if column in table.numeric_columns:
    # Quantile bands (e.g. age bands); missing values form their own band.
    present = values[~np.isnan(values)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, num_banks + 1)[1:-1]))
    bands = np.searchsorted(edges, values, side='right')
    labels = [f'{column}<{edges[0]:g}'] + [
        f'{column}[{lo:g},{hi:g})' for lo, hi in zip(edges[:-1], edges[1:])] + [
            f'{column}>={edges[-1]:g}']
    return np.array(['missing' if np.isnan(v) else labels[b]
                     for v, b in zip(values, bands)], dtype=object)
  return np.array(['missing' if v is None else v for v in values], dtype=object)

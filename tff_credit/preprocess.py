"""Preprocessing computed federatedly: imputation values and scaling statistics.

Where things run:
*   On each bank (TFF clients): from its own training rows only, the count of
    present values, their sum and their sum of squares, per numeric column.
*   On the server: `tff.federated_sum` of those vectors; means and standard
    deviations follow from the sums. No bank's rows leave it, only three sums
    per column.

The category vocabulary is not learned from data: it is the schema the banks
agree on before training (which values "Home" or "Job" can take), as any
shared data dictionary is. In this simulation it is read from the table's
declared values; a category a bank sees that is not in it encodes as all zeros,
like a missing value.

Encoding (what each bank applies to its own rows): numeric columns are
standardized with the federated mean and standard deviation, a missing value
becomes the mean (0 after scaling), and each numeric column that has missing
values anywhere in the federation gets a 0/1 "<column>_missing" indicator;
categorical columns are one-hot over the agreed vocabulary.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from tff_credit import data as data_lib


@dataclasses.dataclass
class Schema:
  numeric_columns: list[str]
  categorical_columns: list[str]
  vocabulary: dict[str, list[str]]
  means: list[float]
  stds: list[float]
  missing_indicators: list[str]   # numeric columns that get an indicator
  label_column: str = ''
  positive_label: str = ''
  negative_label: str = ''

  @property
  def feature_names(self) -> list[str]:
    names = list(self.numeric_columns)
    names += [f'{c}_missing' for c in self.missing_indicators]
    for column in self.categorical_columns:
      names += [f'{column}={v}' for v in self.vocabulary[column]]
    return names

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, value: dict) -> 'Schema':
    return cls(**value)


def agreed_vocabulary(table: data_lib.Table) -> dict[str, list[str]]:
  """The categories of each categorical column (the banks' shared schema)."""
  vocabulary = {}
  for j, column in enumerate(table.categorical_columns):
    vocabulary[column] = sorted({v for v in table.categorical[:, j] if v is not None})
  return vocabulary


def build_federated_sums(num_columns: int):
  """The federated statistics of `num_columns` numeric columns, as a TFF computation.

  Federated type, with d = `num_columns`:

    ({float64[?,d]}@CLIENTS -> float64[3d]@SERVER)

  Each bank (CLIENTS) maps its own rows (NaN = missing) to per-column counts
  of present values, their sums and their sums of squares
  (a `tff.tensorflow.computation`); `tff.federated_sum` adds them up at the
  SERVER. No row leaves a bank.
  """
  import tensorflow as tf
  import tensorflow_federated as tff

  @tff.tensorflow.computation(tff.TensorType(np.float64, [None, num_columns]))
  def client_sums(numeric):
    present = tf.logical_not(tf.math.is_nan(numeric))
    values = tf.where(present, numeric, tf.zeros_like(numeric))
    return tf.concat([
        tf.reduce_sum(tf.cast(present, tf.float64), axis=0),
        tf.reduce_sum(values, axis=0),
        tf.reduce_sum(values * values, axis=0),
    ], axis=0)

  @tff.federated_computation(
      tff.FederatedType(tff.TensorType(np.float64, [None, num_columns]), tff.CLIENTS))
  def federated_sums(numeric_at_banks):
    return tff.federated_sum(tff.federated_map(client_sums, numeric_at_banks))

  return federated_sums


def schema_from_sums(table: data_lib.Table, sums: np.ndarray, total_rows: int) -> Schema:
  """Server side: means, standard deviations and indicators from summed stats."""
  d = len(table.numeric_columns)
  count, total, total_sq = sums[:d], sums[d:2 * d], sums[2 * d:]
  safe = np.maximum(count, 1.0)
  means = total / safe
  variances = np.maximum(total_sq / safe - means ** 2, 0.0)
  stds = np.sqrt(variances)
  # A constant column would divide by zero; scaling by 1 leaves it at 0.
  stds = np.where(stds > 1e-12, stds, 1.0)
  indicators = [c for c, n in zip(table.numeric_columns, count) if n < total_rows]
  return Schema(
      numeric_columns=list(table.numeric_columns),
      categorical_columns=list(table.categorical_columns),
      vocabulary=agreed_vocabulary(table),
      means=[float(m) for m in means],
      stds=[float(s) for s in stds],
      missing_indicators=indicators,
      label_column=table.label_column,
      positive_label=table.positive_label,
      negative_label=table.negative_label,
  )


def federated_schema(table: data_lib.Table, bank_train_rows: Sequence[np.ndarray]) -> Schema:
  """Runs the federated statistics over the banks' training rows."""
  computation = build_federated_sums(len(table.numeric_columns))
  sums = computation([table.numeric[rows] for rows in bank_train_rows])
  total_rows = int(sum(len(rows) for rows in bank_train_rows))
  return schema_from_sums(table, np.asarray(sums, dtype=np.float64), total_rows)


def encode(table: data_lib.Table, rows: np.ndarray, schema: Schema) -> np.ndarray:
  """A bank's rows as float32 features under the agreed schema."""
  numeric = table.numeric[rows]
  missing = np.isnan(numeric)
  scaled = (np.where(missing, np.asarray(schema.means), numeric) - np.asarray(schema.means)) / np.asarray(schema.stds)
  blocks = [scaled]
  for column in schema.missing_indicators:
    blocks.append(missing[:, [schema.numeric_columns.index(column)]].astype(np.float64))
  for j, column in enumerate(schema.categorical_columns):
    vocab = schema.vocabulary[column]
    index = {v: i for i, v in enumerate(vocab)}
    onehot = np.zeros((len(rows), len(vocab)))
    for r, value in enumerate(table.categorical[rows, j]):
      if value in index:
        onehot[r, index[value]] = 1.0
    blocks.append(onehot)
  return np.concatenate(blocks, axis=1).astype(np.float32)

"""A credit federation: the table dealt to banks, encoded with a federated schema.

Runs in the simulation's orchestrator. `build_federation` reads the data,
partitions it into banks, runs the federated statistics (a TFF computation:
see `preprocess.py`) and encodes each bank's rows. The result serves the
training program (a `tff.simulation.datasets.ClientData` keyed by bank name),
the baselines, and the NumPy engine's cross-check.
"""

import dataclasses
from typing import Optional

import numpy as np

from tff_common import errors
from tff_credit import banks as banks_lib
from tff_credit import config as config_lib
from tff_credit import data as data_lib
from tff_credit import preprocess


@dataclasses.dataclass
class Federation:
  config: config_lib.DataConfig
  table: data_lib.Table
  banks: list[banks_lib.Bank]
  schema: preprocess.Schema
  train: dict[str, tuple[np.ndarray, np.ndarray]]   # bank -> (X float32, y float32)
  test: dict[str, tuple[np.ndarray, np.ndarray]]
  # Each bank's validation rows (model selection); empty arrays without them.
  val: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)

  @property
  def bank_names(self) -> list[str]:
    return [b.name for b in self.banks]

  @property
  def num_features(self) -> int:
    return len(self.schema.feature_names)

  def pooled(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The union of the banks' rows of one split (baselines and reports only)."""
    parts = {'train': self.train, 'val': self.val, 'test': self.test}[split]
    xs, ys = zip(*(parts[name] for name in self.bank_names))
    return np.concatenate(xs), np.concatenate(ys)

  def client_data(self):
    """The banks' training rows as a ClientData whose client ids are bank names.

    In memory (`TestClientData`): a few thousand rows per bank fit easily, and
    `create_tf_dataset_for_client` builds a dataset from that bank's rows
    alone, so no bank's dataset carries another bank's data.
    """
    import tensorflow_federated as tff
    return tff.simulation.datasets.TestClientData(
        {name: (x, y[:, None]) for name, (x, y) in self.train.items()})


def build_federation(config: config_lib.DataConfig, *, table: Optional[data_lib.Table] = None,
                     schema: Optional[preprocess.Schema] = None) -> Federation:
  """Reads, partitions and encodes the data described by `config`.

  The encoding `schema` is computed by the banks' federated statistics, or
  given: a trained model's own (`schema.json` of its run directory), so evaluation encodes
  exactly as training did and skips the federated computation.
  """
  if table is None:
    table = data_lib.load_table(
        data=config.data, label_column=config.label_column,
        positive_label=config.positive_label,
        categorical_columns=config.categorical_columns,
        drop_columns=config.drop_columns, bad_rows=config.bad_rows)
  banks = banks_lib.make_banks(
      table, num_banks=config.banks, partition_name=config.partition, seed=config.seed,
      test_fraction=config.test_fraction, val_fraction=config.val_fraction, alpha=config.alpha, skew_column=config.skew_column)
  if schema is not None and (schema.numeric_columns != table.numeric_columns or
                             schema.categorical_columns != table.categorical_columns):
    # Encoding other columns with a trained model's schema would misplace features.
    raise errors.InputError(
        f'{table.source}: its columns ({", ".join(table.numeric_columns + table.categorical_columns)})'
        ' are not those the model was trained on ('
        f'{", ".join(schema.numeric_columns + schema.categorical_columns)})')
  if schema is None:
    # The banks' training rows only: neither validation rows (so selection
    # scores rows the encoding never saw) nor test rows.
    schema = preprocess.federated_schema(table, [b.train_rows for b in banks])

  def arrays(rows):
    return (preprocess.encode(table, rows, schema), table.labels[rows].astype(np.float32))

  return Federation(
      config=config, table=table, banks=banks, schema=schema,
      train={b.name: arrays(b.train_rows) for b in banks},
      test={b.name: arrays(b.test_rows) for b in banks},
      val={b.name: arrays(b.val_rows) for b in banks})

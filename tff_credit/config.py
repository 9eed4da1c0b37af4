"""The settings of a credit run: the banks' data, the algorithm, the training.

`settings` is what `config.json` of a run directory holds (and what a rerun
must match); `from_settings` reads it back for evaluation.
"""

import dataclasses
from typing import Any
from typing import Optional

from tff_common import program_config
from tff_credit import data as data_lib

ALGORITHMS = ('fedsgd', 'fedavg', 'fedprox', 'fedadam', 'fedyogi')
WEIGHTINGS = ('examples', 'uniform')
MODELS = ('logreg', 'mlp')


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Everything that determines the banks' data."""
  data: str = data_lib.BUNDLED
  label_column: Optional[str] = None
  positive_label: Optional[str] = None
  categorical_columns: Optional[list[str]] = None
  drop_columns: list[str] = dataclasses.field(default_factory=list)
  bad_rows: str = 'error'
  banks: int = 5
  partition: str = 'size_skew'
  alpha: float = 0.5
  skew_column: str = 'Home'
  test_fraction: float = 0.25
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class AlgorithmConfig:
  """The federated algorithm (`tff_credit.algorithms.build_process`)."""
  algorithm: str = 'fedavg'
  weighting: str = 'examples'
  client_lr: float = 0.1
  server_lr: float = 1.0
  server_momentum: float = 0.0
  mu: float = 0.01
  aggregator: str = 'mean'


@dataclasses.dataclass(frozen=True)
class TrainConfig(program_config.ProgramConfig):
  """The model and the rounds (the shared program's settings included)."""
  rounds: int = 40
  clients_per_round: Optional[int] = None
  rounds_per_checkpoint: int = 1
  seed: int = 0
  model: str = 'logreg'
  local_epochs: int = 1
  batch_size: int = 32


def settings(data: DataConfig, algorithm: AlgorithmConfig, train: TrainConfig) -> dict[str, Any]:
  return {'data': dataclasses.asdict(data), 'algorithm': dataclasses.asdict(algorithm),
          'train': dataclasses.asdict(train)}


def from_settings(value: dict[str, Any]) -> tuple[DataConfig, AlgorithmConfig, TrainConfig]:
  return (DataConfig(**value['data']), AlgorithmConfig(**value['algorithm']),
          TrainConfig(**value['train']))

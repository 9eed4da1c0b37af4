"""The settings of a credit run: the banks' data, the algorithm, the training.

`settings` is what `config.json` of a run directory holds (and what a rerun
must match); `from_settings` reads it back for evaluation.
"""

import dataclasses
import math
from typing import Any
from typing import Optional

from tff_common import aggregation
from tff_common import checks
from tff_common import dp
from tff_common import files
from tff_common import program_config
from tff_credit import banks as banks_lib
from tff_credit import data as data_lib

ALGORITHMS = ('fedsgd', 'fedavg', 'fedprox', 'fedadam', 'fedyogi', 'mime_lite')
WEIGHTINGS = ('examples', 'uniform')
MODELS = ('logreg', 'mlp')
BAD_ROWS = ('error', 'drop')
# Whose privacy differential privacy protects: each customer (DP-SGD inside the
# banks, `tff_credit.dp_sgd`) or each bank (the DP mean over banks, `tff_common.dp`).
DP_LEVELS = ('record', 'bank')
# A poisoning bank in simulation (`tff_credit.poisoning`).
ATTACKS = ('scale', 'sign_flip', 'label_flip')
# Which round's model a run reports (`tff_common.program.Selection`): the best
# by validation AUC, or the last. Without validation rows it is the last.
SELECTIONS = ('best', 'last')
# How a bank's round data reaches TFF (`--client_data`): tf.data datasets (TFF's
# learning processes), padded tensors of batches (`tff_credit.tensor_client_work`:
# the same batches, a round several times cheaper), or auto: tensors wherever
# they are supported (`tensors_unsupported`), else datasets.
CLIENT_DATA = ('auto', 'datasets', 'tensors')


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
  # Share of each bank's training rows held out for validation (model
  # selection); its test rows are split first and never touched. 0: none.
  val_fraction: float = 0.2
  seed: int = 0

  def check(self):
    checks.one_of('bad_rows', self.bad_rows, BAD_ROWS)
    checks.at_least('banks', self.banks, 1)
    checks.one_of('partition', self.partition, banks_lib.PARTITIONS)
    checks.positive('alpha', self.alpha)
    checks.in_range('test_fraction', self.test_fraction, 0, 1, low_open=True, high_open=True)
    checks.in_range('val_fraction', self.val_fraction, 0, 1, high_open=True)
    checks.at_least('seed', self.seed, 0)


@dataclasses.dataclass(frozen=True)
class AlgorithmConfig(aggregation.AggregatorConfig, dp.DPConfig):
  """The federated algorithm (`tff_credit.algorithms.build_process`), with the
  server's aggregator (`tff_common.aggregation`) and differential privacy.

  Differential privacy (on when `dp_enabled`), at `dp_level`:
    record  customer-level: DP-SGD inside every bank (`tff_credit.dp_sgd`):
            each customer's gradient clipped to `dp_clip`, Gaussian noise,
            Poisson-sampled batches; epsilon per bank. FedAvg only.
    bank    bank-level: each bank's update clipped to `dp_clip`, noised on the
            server, uniform mean over banks (`tff_common.dp`). With five
            banks the epsilon is large for any useful noise.

  Mime-lite (`algorithm='mime_lite'`) runs without differential privacy and
  without a model-poisoning simulation (its client work is TFF's own).

  `client_data` (`CLIENT_DATA`): how the banks' rounds reach TFF; 'tensors'
  refuses what it does not run (`tensors_unsupported`), 'auto' resolves to
  it where it runs (`client_data_path`). A directory written before the
  setting existed trained on 'datasets' (`PREDATED`).
  """
  algorithm: str = 'fedavg'
  weighting: str = 'examples'
  client_lr: float = 0.1
  server_lr: float = 1.0
  server_momentum: float = 0.0
  mu: float = 0.01
  dp_level: str = 'record'
  client_data: str = 'auto'

  def check(self):
    aggregation.AggregatorConfig.check(self)
    dp.DPConfig.check(self)
    checks.one_of('dp_level', self.dp_level, DP_LEVELS)
    if self.dp_enabled:
      dp.check_composable(self)
      if self.dp_level == 'record' and self.algorithm != 'fedavg':
        checks.fail('algorithm', self.algorithm,
                    'fedavg with --dp_level=record (DP-SGD inside the banks runs FedAvg)')
      if self.dp_level == 'record' and self.dp_adaptive_quantile is not None:
        checks.fail('dp_adaptive_quantile', self.dp_adaptive_quantile,
                    'unset with --dp_level=record (DP-SGD clips each example to a fixed '
                    '--dp_clip; adaptive clipping is for --dp_level=bank)')
    checks.one_of('algorithm', self.algorithm, ALGORITHMS)
    if self.algorithm == 'mime_lite' and self.dp_enabled:
      checks.fail('algorithm', self.algorithm, 'one of fedavg, fedsgd, fedprox, fedadam, '
                  'fedyogi with differential privacy (mime_lite runs without it)')
    checks.one_of('weighting', self.weighting, WEIGHTINGS)
    # A zero step trains nothing and would be reported as a trained model.
    checks.positive('client_lr', self.client_lr)
    checks.positive('server_lr', self.server_lr)
    checks.in_range('server_momentum', self.server_momentum, 0, 1, high_open=True)
    checks.non_negative('mu', self.mu)
    checks.one_of('client_data', self.client_data, CLIENT_DATA)
    if self.client_data == 'tensors':
      reason = tensors_unsupported(self)
      if reason:
        checks.fail('client_data', self.client_data, f'datasets or auto {reason}')


@dataclasses.dataclass(frozen=True)
class TrainConfig(program_config.ProgramConfig):
  """The model and the rounds (the shared program's settings included), and
  the simulated poisoning bank, if any.

  Attributes (the poisoning; see `tff_credit.poisoning`):
    attack_bank: The bank that attacks every round it takes part in; None: no
      attack. Whether it exists is checked once the banks are known
      (`poisoning.check_bank`).
    attack: One of `ATTACKS`; set exactly when `attack_bank` is.
    attack_scale: The magnitude of a model-poisoning update factor (> 0):
      `scale` multiplies the update by it (None: 100), `sign_flip` by minus it
      (None: 1, the plain sign flip). No value under `label_flip`.
  """
  rounds: int = 40
  clients_per_round: Optional[int] = None
  # A checkpoint costs about what a whole round on tensors does
  # (bench/credit_round_cost.py); every 5 rounds a kill loses at most 4 of them.
  rounds_per_checkpoint: int = 5
  seed: int = 0
  model: str = 'logreg'
  local_epochs: int = 1
  batch_size: int = 32
  # L2 penalty on the scorecard's kernels (Keras kernel_regularizer), in the
  # federated model and the baselines alike; 0: none.
  l2: float = 0.0
  # The reported model: the round with the best validation AUC, or the last.
  select: str = 'best'
  # None by default so that the settings of runs made before the attack
  # existed are those of an unpoisoned run (a resume compares them).
  attack_bank: Optional[str] = None
  attack: Optional[str] = None
  attack_scale: Optional[float] = None

  def check(self):
    super().check()
    checks.one_of('model', self.model, MODELS)
    checks.at_least('local_epochs', self.local_epochs, 1)
    checks.at_least('batch_size', self.batch_size, 1)
    checks.in_range('l2', self.l2, 0, math.inf, high_open=True)
    checks.one_of('select', self.select, SELECTIONS)
    if self.attack_bank is None:
      if self.attack is not None:
        checks.fail('attack', self.attack, 'no value without --attack_bank (the poisoning bank)')
      if self.attack_scale is not None:
        checks.fail('attack_scale', self.attack_scale, 'no value without --attack_bank')
      return
    if self.attack is None:
      checks.fail('attack', self.attack, f'one of {", ".join(ATTACKS)} for '
                  f'--attack_bank={self.attack_bank}')
    checks.one_of('attack', self.attack, ATTACKS)
    if self.attack_scale is not None:
      if self.attack == 'label_flip':
        checks.fail('attack_scale', self.attack_scale,
                    'no value under --attack=label_flip (it sizes scale and sign_flip updates)')
      if not 0 < self.attack_scale < math.inf:  # an infinite update is dropped by TFF, not sent
        checks.fail('attack_scale', self.attack_scale, 'a finite number > 0')


def check(data: DataConfig, algorithm: AlgorithmConfig, train: TrainConfig):
  """Every flag of a run, before anything is read or written."""
  data.check()
  algorithm.check()
  train.check()
  if algorithm.dp_enabled and algorithm.dp_level == 'record' and train.attack_bank is not None:
    checks.fail('attack_bank', train.attack_bank,
                'no poisoning bank with --dp_level=record (not simulated together)')
  if algorithm.client_data == 'tensors':
    reason = tensors_unsupported(algorithm, train=train)
    if reason:
      checks.fail('client_data', algorithm.client_data, f'datasets or auto {reason}')
  if algorithm.algorithm == 'mime_lite' and train.attack in ('scale', 'sign_flip'):
    checks.fail('attack', train.attack, 'label_flip with --algorithm=mime_lite (its updates '
                'are not wrapped by the poisoning simulation)')


def tensors_unsupported(algorithm: AlgorithmConfig, *,
                        train: Optional[TrainConfig] = None) -> Optional[str]:
  """Why `--client_data=tensors` cannot run these settings ('with ...'), or None."""
  if algorithm.algorithm in ('fedsgd', 'mime_lite'):
    return (f'with --algorithm={algorithm.algorithm} (tensors: fedavg, fedprox, fedadam, '
            'fedyogi; its client work is TFF\'s own, on datasets)')
  if algorithm.dp_enabled and algorithm.dp_level == 'record':
    return "with --dp_level=record (DP-SGD's Poisson batches are datasets)"
  if train is not None and train.attack in ('scale', 'sign_flip'):
    return (f'with --attack={train.attack} (the poisoning simulation wraps the datasets\' '
            'client work)')
  return None


def client_data_path(algorithm: AlgorithmConfig, train: TrainConfig) -> str:
  """'datasets' or 'tensors': what `--client_data` resolves to for a run."""
  if algorithm.client_data != 'auto':
    return algorithm.client_data
  return 'datasets' if tensors_unsupported(algorithm, train=train) else 'tensors'


def selection(data: DataConfig, train: TrainConfig) -> str:
  """The rule a run reports its model by: 'best' (validation AUC) or 'last'
  (asked for, or no validation rows to choose by)."""
  return 'best' if train.select == 'best' and data.val_fraction > 0 else 'last'


# What a run written before a setting existed did: no validation rows, no L2,
# datasets as client data (`from_settings` reads such a directory so;
# `defaults` lets it be resumed).
PREDATED = {'data': {'val_fraction': 0.0}, 'train': {'l2': 0.0, 'select': 'best'},
            'algorithm': {'client_data': 'datasets'}}


def defaults() -> dict[str, Any]:
  """The settings a directory written before a setting existed is compared
  with (`RunDir.claim`): every flag at its default, except the settings of
  `PREDATED`, which take the value such a run had. So an old directory is
  resumed only with --val_fraction=0 (its banks' rows stay as they were) and
  --client_data=datasets."""
  return settings(DataConfig(**PREDATED['data']), AlgorithmConfig(**PREDATED['algorithm']),
                  TrainConfig(**PREDATED['train']), data_sha256='')


def settings(data: DataConfig, algorithm: AlgorithmConfig, train: TrainConfig, *,
             data_sha256: str) -> dict[str, Any]:
  """What the run directory stores: the three configs and the data's fingerprint
  (`data/sha256`), so a rerun or an evaluation on changed data is refused."""
  return {'data': {**dataclasses.asdict(data), 'sha256': data_sha256},
          'algorithm': dataclasses.asdict(algorithm), 'train': dataclasses.asdict(train)}


# The settings' record of the noise multiplier a DP run uses: calibrated from
# --target_epsilon for the run's rounds, so training further would change it
# (and is refused, rather than mixing two noise levels).
NOISE_MULTIPLIER_IN_USE = 'noise_multiplier_in_use'



def from_settings(value: dict[str, Any]) -> tuple[DataConfig, AlgorithmConfig, TrainConfig, str]:
  """The configs of `settings` and the data fingerprint ('' if it predates them)."""
  data = {**PREDATED['data'], **value['data']}
  sha256 = data.pop('sha256', '')
  algorithm = {k: v for k, v in {**PREDATED['algorithm'], **value['algorithm']}.items()
               if k != NOISE_MULTIPLIER_IN_USE}
  return (DataConfig(**data), AlgorithmConfig(**algorithm),
          TrainConfig(**{**PREDATED['train'], **value['train']}), sha256)


def table_sha256(table: data_lib.Table) -> str:
  """The fingerprint of a parsed table: its columns, values and labels."""
  return files.fingerprint(table.numeric_columns, table.categorical_columns, table.numeric,
                           table.categorical, table.labels, table.positive_label)

"""The settings of a recommendation run: the data split, and one algorithm's training.

One directory holds one data split (`DataConfig`, its config.json) and one
training run per algorithm (`TrainConfig`, in `<algorithm>/config.json`).
How the defaults were chosen is in bench/README.md (tuning notes).
"""

import dataclasses
from typing import Any
from typing import Optional

from tff_common import aggregation
from tff_common import checks
from tff_common import dp
from tff_common import errors
from tff_common import files
from tff_common import program_config
from tff_common import run_dir
from tff_rec import reconstruction
from tff_rec import split as split_lib

ALGORITHMS = ('fedrecon', 'fedavg', 'centralized')
FEDERATED = ('fedrecon', 'fedavg')
# FedRecon's server step is large on purpose: the server averages item updates
# over every sampled client, yet a movie is rated by few of them, so the mean
# shrinks its update by about `clients_per_round`. FedAvg diverges at that step.
DEFAULT_SERVER_LR = {'fedrecon': 30.0, 'fedavg': 3.0}
# How FedRecon's server mean weights each sampled user's item update: by the
# examples it trained on, once per user, or the implicit (ranking) head's part
# once per user and the rating head's by examples (under DP always once per user).
EXAMPLES = 'examples'
UNIFORM = 'uniform'
IMPLICIT_UNIFORM = 'implicit_uniform'
CLIENT_WEIGHTINGS = (EXAMPLES, UNIFORM, IMPLICIT_UNIFORM)
# What a run directory whose settings predate one of these keys was trained
# with, whatever today's default: read back (`from_settings`) and resumed
# (`predated_defaults`) as that, never as a changed default.
PREDATED = {'client_weighting': EXAMPLES}
# The settings' record of the noise multiplier a DP run uses (see TrainConfig.settings).
NOISE_MULTIPLIER_IN_USE = 'noise_multiplier_in_use'


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The ratings and how they are split; shared by every algorithm of a directory."""
  data: str = ''                 # empty: the bundled MovieLens
  skip_bad_lines: bool = False
  split: str = 'random'
  test_fraction: float = 0.2
  heldout_users_fraction: float = 0.1
  seed: int = 0

  def check(self):
    checks.one_of('split', self.split, split_lib.METHODS)
    checks.in_range('test_fraction', self.test_fraction, 0, 1, low_open=True, high_open=True)
    checks.in_range('heldout_users_fraction', self.heldout_users_fraction, 0, 1, high_open=True)
    checks.at_least('seed', self.seed, 0)


@dataclasses.dataclass(frozen=True)
class TrainConfig(program_config.ProgramConfig, aggregation.AggregatorConfig, dp.DPConfig):
  """One algorithm's hyperparameters (the shared program's settings included).

  Differential privacy (`tff_common.dp`) is user-level and FedRecon's only: each
  sampled user's item-parameter update is clipped to `dp_clip`, the server adds
  Gaussian noise to the sum and averages uniformly over the round's users.

  `client_weighting` is FedRecon's (FedAvg weights by examples; under
  differential privacy every user counts once whatever it says).

  `server_lr` None means `DEFAULT_SERVER_LR` of the algorithm. The implicit
  head (model.py) is on when both `negatives_per_rating` (unrated items each
  device samples per rating) and `implicit_weight` (its loss weight, i.e. its
  learning-rate multiplier under SGD) are positive; without it top-N lists
  rank by predicted rating.
  """
  rounds: int = 100
  clients_per_round: Optional[int] = 50
  rounds_per_checkpoint: int = 10
  seed: int = 0
  algorithm: str = 'fedrecon'
  client_lr: float = 0.1
  server_lr: Optional[float] = None
  recon_lr: float = 0.1
  recon_epochs: int = 3
  dim: int = 32
  l2: float = 0.05
  batch_size: int = 16          # ratings per batch (see examples_per_batch)
  centralized_epochs: int = 15
  centralized_lr: float = 0.003
  centralized_l2: float = 0.1
  negatives_per_rating: float = 3.0
  # Chosen on a validation split of the training users' train ratings at the
  # default budget (bench/rec_ranking_tuning.py): the implicit head's update
  # counted once per user and weighted 60 ranks better than by examples at 40
  # (HR@10 0.668 -> 0.712), the rating head and its RMSE unchanged (weighting
  # it uniformly too made its server step unstable at server_lr 30).
  implicit_weight: float = 60.0
  implicit_l2: float = 0.005
  client_weighting: str = IMPLICIT_UNIFORM

  def check(self):
    """Raises `errors.InputError` naming the first flag out of range."""
    program_config.ProgramConfig.check(self)
    aggregation.AggregatorConfig.check(self)
    dp.DPConfig.check(self)
    if self.dp_enabled:
      if self.algorithm != 'fedrecon':
        checks.fail('algorithm', self.algorithm,
                    'fedrecon with differential privacy (FedAvg ships user rows, the '
                    'centralized baseline pools the ratings)')
      dp.check_composable(self)
    checks.one_of('algorithm', self.algorithm, ALGORITHMS)
    checks.one_of('client_weighting', self.client_weighting, CLIENT_WEIGHTINGS)
    for flag in ('client_lr', 'recon_lr', 'centralized_lr'):
      checks.positive(flag, getattr(self, flag))
    if self.server_lr is not None:
      checks.positive('server_lr', self.server_lr)
    for flag in ('recon_epochs', 'dim', 'batch_size', 'centralized_epochs'):
      checks.at_least(flag, getattr(self, flag), 1)
    for flag in ('l2', 'centralized_l2', 'negatives_per_rating', 'implicit_weight', 'implicit_l2'):
      checks.non_negative(flag, getattr(self, flag))

  def effective_server_lr(self) -> float:
    if self.server_lr is not None:
      return self.server_lr
    return DEFAULT_SERVER_LR.get(self.algorithm, 1.0)

  @property
  def implicit(self) -> bool:
    """Whether the model has (and trains) the implicit head."""
    return self.negatives_per_rating > 0 and self.implicit_weight > 0

  def negatives(self) -> float:
    """Unrated items sampled per rating (none without the implicit head)."""
    return self.negatives_per_rating if self.implicit else 0.0

  def loss_weight(self) -> float:
    """The implicit head's weight in the loss (0 without the head)."""
    return self.implicit_weight if self.implicit else 0.0

  def examples_per_batch(self) -> int:
    """A batch holds `batch_size` ratings and about `negatives()` x as many
    unrated items, so the rating head's steps do not depend on them."""
    return max(1, int(round(self.batch_size * (1 + self.negatives()))))

  def recon(self) -> reconstruction.ReconConfig:
    """How a device rebuilds its user parameters under this model."""
    return reconstruction.ReconConfig(
        lr=self.recon_lr, epochs=self.recon_epochs, batch_size=self.examples_per_batch(),
        negatives_per_rating=self.negatives(), implicit_weight=self.loss_weight(),
        seed=self.seed)

  def model_kwargs(self, split) -> dict:
    """The model's shape and regularization (`model.*_model_fn`) on `split`."""
    return dict(num_items=split.num_items, dim=self.dim, l2=self.l2,
                global_mean=split.global_mean(), seed=self.seed, implicit=self.implicit,
                implicit_l2=self.implicit_l2)

  def settings(self, *, noise_multiplier: float = 0.0) -> dict[str, Any]:
    """What the run directory stores (the effective server step included, and
    under differential privacy the noise multiplier in use: calibrated from
    `target_epsilon` for this many rounds, so a rerun with other rounds would
    change it and is refused rather than mixing two noise levels)."""
    settings = {**dataclasses.asdict(self), 'server_lr': self.effective_server_lr()}
    if self.dp_enabled:
      settings[NOISE_MULTIPLIER_IN_USE] = noise_multiplier
    return settings

  @classmethod
  def from_settings(cls, values: dict[str, Any], *, where: str) -> 'TrainConfig':
    """Reads `settings()` back, including those of older versions of tff_rec."""
    values = dict(values)
    values.pop(NOISE_MULTIPLIER_IN_USE, None)
    for key in cls.MAY_CHANGE:
      if values.get(key) is None:  # older versions stored None here
        values.pop(key, None)
    if 'implicit_weight' not in values:
      # Stored by a tff_rec without the implicit head: a rating-only model,
      # unless it was trained with the old imputed-negative targets.
      if values.pop('negative_weight', 0.0) and values.get('negatives_per_rating', 0.0):
        raise errors.InputError(
            f'{where}: trained by an older tff_rec with imputed negative ratings, which '
            'this version cannot evaluate; train again in a new --output_dir')
      values.update(negatives_per_rating=0.0, implicit_weight=0.0)
    for key, value in PREDATED.items():
      values.setdefault(key, value)
    return cls(**values)

  @classmethod
  def predated_defaults(cls) -> dict[str, Any]:
    """`RunDir.claim(defaults=...)`: the value a directory lacking a setting
    was trained with (today's default, except the keys of `PREDATED`)."""
    return {**dataclasses.asdict(cls()), **PREDATED}


def data_settings(config: DataConfig, split: split_lib.Split) -> dict[str, Any]:
  """What a directory stores about its data: the data flags and the split's
  fingerprint (`sha256`), so a rerun or an evaluation on changed data is refused."""
  return {**dataclasses.asdict(config), 'sha256': split_sha256(split)}


def split_sha256(split: split_lib.Split) -> str:
  """The fingerprint of a split: every part's users, items, ratings and times."""
  parts = (split.train, split.test, split.heldout_train, split.heldout_test)
  return files.fingerprint(split.item_ids, *(getattr(part, field) for part in parts
                                             for field in ('users', 'offsets', 'items',
                                                           'ratings', 'timestamps')))


def read_data_config(root: run_dir.RunDir) -> DataConfig:
  """The data settings of the directory `root` (written by the first training)."""
  values = dict(root.read_json(
      run_dir.CONFIG, missing_hint=f'run `python -m tff_rec.train --output_dir={root.path}` first'))
  values.pop('sha256', None)
  return DataConfig(**values)


def check_data(root: run_dir.RunDir, split: split_lib.Split):
  """Refuses to evaluate the models of `root` on a split of changed data."""
  stored = root.read_json(run_dir.CONFIG).get('sha256')
  if stored and stored != split_sha256(split):
    raise errors.InputError(
        f'{root.path}: the ratings changed since its models were trained (the split\'s '
        'fingerprint differs); use the data they were trained on, or train again in a '
        'new --output_dir')


def read_train_config(root: run_dir.RunDir, algorithm: str) -> TrainConfig:
  """The settings `algorithm` was trained with in the directory `root`."""
  run = root.child(algorithm)
  return TrainConfig.from_settings(run.read_json(
      run_dir.CONFIG, missing_hint=f'train with --algorithm={algorithm} first'), where=run.path)

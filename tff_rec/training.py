"""Training runs: data preparation, the federated trainers, the centralized baseline.

Runs on the Python orchestrator. Federated algorithms are driven by the shared
`tff_common.program.run_training` loop (sampling, checkpoints and resume,
metrics.csv, TensorBoard); this module chooses the process and the clients'
datasets and releases the final global parameters as `model.npz`.

Layout of an output directory (one data split, several algorithms):

    DIR/data.json             data and split flags, shared by every algorithm
    DIR/<algorithm>/          fedrecon, fedavg or centralized
        train_config.json     the hyperparameters of that run
        checkpoints/ metrics.csv tensorboard/   (federated runs)
        model.npz             the released parameters
"""

import csv
import dataclasses
import json
import os
import time
from typing import Optional

import numpy as np

from tff_common import errors
from tff_common import files
from tff_common import program
from tff_common import runtime
from tff_rec import algorithms as algorithms_lib
from tff_rec import centralized
from tff_rec import clients
from tff_rec import data as data_lib
from tff_rec import evaluation
from tff_rec import model as model_lib
from tff_rec import params as params_lib
from tff_rec import split as split_lib

ALGORITHMS = ('fedrecon', 'fedavg', 'centralized')

FEDERATED = ('fedrecon', 'fedavg')
DEFAULT_SERVER_LR = {'fedrecon': 30.0, 'fedavg': 3.0}


@dataclasses.dataclass(frozen=True)
class DataConfig:
  data: str = ''                 # empty: the bundled MovieLens
  skip_bad_lines: bool = False
  split: str = 'random'
  test_fraction: float = 0.2
  heldout_users_fraction: float = 0.1
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hyperparameters; the defaults were tuned on the bundled MovieLens.

  `server_lr` (None: `DEFAULT_SERVER_LR` of the algorithm) is large for
  FedRecon on purpose: the server averages item updates over all sampled
  clients' ratings, yet a given movie is rated by only a few of them, so the
  mean shrinks each movie's update by about `clients_per_round`; a server step
  of ~0.6 x clients_per_round restores a per-rating step like centralized
  SGD's. (Bundled data: test RMSE 0.891 after 100 rounds with server_lr 30;
  0.957 after 60 rounds with server_lr 1.) FedAvg trains the offset and every
  bias jointly on each client, with nothing reconstructed to absorb a user's
  shift first, and diverges within 3 rounds at server_lr 10 or 30; 3 is stable.
  """
  algorithm: str = 'fedrecon'
  rounds: int = 100
  clients_per_round: int = 50
  client_lr: float = 0.1
  server_lr: Optional[float] = None
  recon_lr: float = 0.1
  recon_epochs: int = 3
  dim: int = 32
  l2: float = 0.05
  batch_size: int = 16          # ratings per batch (see examples_per_batch)
  seed: int = 0
  rounds_per_checkpoint: int = 10
  aggregator: str = 'mean'
  centralized_epochs: int = 15
  centralized_lr: float = 0.003
  centralized_l2: float = 0.1
  # The implicit head (model.py): unrated items sampled on each device per
  # rating, its loss weight, which is its learning-rate multiplier under the
  # federated runs' SGD (the logistic loss's gradients are far smaller than
  # squared rating errors; Adam, in the centralized run, is insensitive to
  # it), and its L2. Either of the first two at 0: no implicit head, and
  # top-N lists rank by predicted rating. Chosen on the bundled data with a
  # NumPy simulation of FedRecon (HR@10 after 100 rounds): 3 unrated items
  # per rating beat 1 (0.73 vs 0.68); an L2 of 0.05 (the rating head's)
  # instead of 0.005 cost 0.1.
  negatives_per_rating: float = 3.0
  implicit_weight: float = 40.0
  implicit_l2: float = 0.005

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

  def recon(self) -> evaluation.ReconConfig:
    return evaluation.ReconConfig(lr=self.recon_lr, epochs=self.recon_epochs,
                                  batch_size=self.examples_per_batch(),
                                  negatives_per_rating=self.negatives(),
                                  implicit_weight=self.loss_weight(), seed=self.seed)

  def model_kwargs(self, split: split_lib.Split) -> dict:
    """The model's shape and regularization, for `model.*_model_fn`."""
    return dict(num_items=split.num_items, dim=self.dim, l2=self.l2,
                global_mean=split.global_mean(), seed=self.seed, implicit=self.implicit,
                implicit_l2=self.implicit_l2)


def prepare(config: DataConfig, log=program.print_flushed) -> split_lib.Split:
  """Loads the ratings and splits them; reports what was skipped or dropped."""
  ratings = data_lib.load(config.data, skip_bad_lines=config.skip_bad_lines)
  log(f'data: {ratings.source}: {len(ratings):,} ratings, '
      f'{len(set(ratings.user.tolist())):,} users, {len(set(ratings.item.tolist())):,} items')
  if ratings.skipped_lines:
    log(f'data: skipped {ratings.skipped_lines:,} malformed lines (--skip_bad_lines)')
  split = split_lib.split_ratings(
      ratings, method=config.split, test_fraction=config.test_fraction,
      heldout_users_fraction=config.heldout_users_fraction, seed=config.seed)
  log(f'split ({config.split}): {len(split.train)} training users '
      f'({split.train.num_ratings:,} train / {split.test.num_ratings:,} test ratings), '
      f'{len(split.heldout_train)} held-out users; vocabulary {split.num_items:,} items')
  dropped = {k: v for k, v in split.unknown_items.items() if v}
  if dropped:
    log('ratings of items outside the training vocabulary, skipped: ' +
        ', '.join(f'{k} {v:,}' for k, v in dropped.items()))
  return split


def data_config_path(output_dir: str) -> str:
  return os.path.join(output_dir, 'data.json')


def model_path(output_dir: str, algorithm: str) -> str:
  return os.path.join(output_dir, algorithm, 'model.npz')


def _check_or_write(path: str, settings: dict):
  """Refuses to mix runs of different settings in one directory; stores them."""
  program.check_run_settings(path, settings)
  if not os.path.exists(path):
    files.write_json(path, settings)


def load_data_config(output_dir: str) -> DataConfig:
  path = data_config_path(output_dir)
  if not os.path.isfile(path):
    raise errors.InputError(f'{path}: not found; run `python -m tff_rec.train '
                            f'--output_dir={output_dir}` first')
  with open(path) as f:
    return DataConfig(**json.load(f))


def load_train_config(output_dir: str, algorithm: str) -> TrainConfig:
  with open(os.path.join(output_dir, algorithm, 'train_config.json')) as f:
    values = json.load(f)
  for key in ('rounds', 'rounds_per_checkpoint'):
    values.pop(key, None)  # not part of the stored settings (see `train`)
  if 'implicit_weight' not in values:
    # Stored by a tff_rec without the implicit head: a rating-only model,
    # unless it was trained with the old imputed-negative targets.
    if values.pop('negative_weight', 0.0) and values.get('negatives_per_rating', 0.0):
      raise errors.InputError(
          f'{output_dir}/{algorithm}: trained by an older tff_rec with imputed negative '
          'ratings, which this version cannot evaluate; train again in a new --output_dir')
    values.update(negatives_per_rating=0.0, implicit_weight=0.0)
  return TrainConfig(**values)


def build_process(split: split_lib.Split, config: TrainConfig):
  """The learning process of `config.algorithm` and its variable layout."""
  common = config.model_kwargs(split)
  if config.algorithm == 'fedrecon':
    process = algorithms_lib.build_fed_recon(
        model_fn=model_lib.reconstruction_model_fn(**common),
        client_lr=config.client_lr, server_lr=config.effective_server_lr(),
        recon_lr=config.recon_lr, recon_epochs=config.recon_epochs,
        implicit_weight=config.loss_weight(), aggregator=config.aggregator)
    return process, list(model_lib.global_names(config.implicit))
  if config.algorithm == 'fedavg':
    process = algorithms_lib.build_fed_avg(
        model_fn=model_lib.global_model_fn(num_users=len(split.train),
                                           implicit_weight=config.loss_weight(), **common),
        client_lr=config.client_lr, server_lr=config.effective_server_lr(),
        aggregator=config.aggregator)
    keras_model = model_lib.build_keras_model(num_users=len(split.train),
                                              with_user_input=True, **common)
    return process, model_lib.variable_layers(keras_model)
  raise ValueError(f'{config.algorithm!r} is not a federated algorithm')


def build_eval_process(split: split_lib.Split, config: TrainConfig):
  """TFF's `build_fed_recon_eval` for a model trained with `config`."""
  return algorithms_lib.build_fed_recon_eval(
      model_fn=model_lib.reconstruction_model_fn(**config.model_kwargs(split)),
      recon_lr=config.recon_lr, recon_epochs=config.recon_epochs,
      implicit_weight=config.loss_weight())


def global_weights(params: params_lib.MFParams) -> list:
  """The global trainable weights of the reconstruction model, from `params`."""
  weights = [params.item_factors, params.item_bias.reshape(-1, 1), np.float32(params.offset)]
  if params.implicit:
    weights += [params.implicit_item_factors, params.implicit_item_bias.reshape(-1, 1)]
  return weights


def user_factors(params: params_lib.MFParams, split: split_lib.Split,
                 config: TrainConfig) -> params_lib.UserFactors:
  """Training users' parameters: the model's table, or reconstructed on device."""
  table = params.table()
  if table is not None:
    return table
  return evaluation.reconstruct_part(params, split.train, config.recon())


def train(*, data_config: DataConfig, train_config: TrainConfig, output_dir: str,
          split: Optional[split_lib.Split] = None,
          log=program.print_flushed) -> params_lib.MFParams:
  """Trains `train_config.algorithm` (resuming if it can) and writes model.npz."""
  if train_config.algorithm not in ALGORITHMS:
    raise errors.InputError(f'--algorithm={train_config.algorithm}: expected one of '
                            f'{", ".join(ALGORITHMS)}')
  if split is None:
    split = prepare(data_config, log=log)  # bad input stops us before anything is written
  os.makedirs(output_dir, exist_ok=True)
  _check_or_write(data_config_path(output_dir), dataclasses.asdict(data_config))
  run_dir = os.path.join(output_dir, train_config.algorithm)
  os.makedirs(run_dir, exist_ok=True)
  # The round count may grow between runs (train further) and checkpoints may
  # be taken at another period; nothing else may change.
  _check_or_write(os.path.join(run_dir, 'train_config.json'),
                  {**dataclasses.asdict(train_config), 'rounds': None,
                   'rounds_per_checkpoint': None,
                   'server_lr': train_config.effective_server_lr()})
  started = time.perf_counter()
  if train_config.algorithm == 'centralized':
    params = centralized.train_mf(split, config=train_config, log=log)
    rounds = 0
    seconds = time.perf_counter() - started
  else:
    params, rounds = _train_federated(split, train_config, run_dir, log=log)
    seconds = _round_seconds(run_dir, rounds)
  params_lib.save(params, model_path(output_dir, train_config.algorithm),
                  algorithm=train_config.algorithm, rounds=rounds, seconds=seconds)
  test = evaluation.rating_metrics(params, user_factors(params, split, train_config),
                                   split.test)
  log(f'{train_config.algorithm}: test RMSE {test["rmse"]:.4f} after '
      f'{rounds or train_config.centralized_epochs} {"rounds" if rounds else "epochs"} '
      f'({seconds:.0f} s of training); model in '
      f'{model_path(output_dir, train_config.algorithm)}')
  return params


def _round_seconds(run_dir: str, rounds: int) -> float:
  """Time spent in rounds 1..rounds, over every run that contributed (resumes included)."""
  with open(os.path.join(run_dir, 'metrics.csv')) as f:
    return sum(float(row['seconds']) for row in csv.DictReader(f)
               if int(row['round']) <= rounds)


def _train_federated(split, config: TrainConfig, run_dir: str, log):
  runtime.install_execution_context()
  process, layers = build_process(split, config)
  client_data_fn = clients.training_data_fn(
      split.train, batch_size=config.examples_per_batch(), seed=config.seed,
      global_user_table=config.algorithm == 'fedavg', num_items=split.num_items,
      negatives_per_rating=config.negatives())

  def to_params(state):
    return params_lib.from_weights(algorithms_lib.trainable_weights(process, state),
                                   layers, l2=config.l2, implicit_l2=config.implicit_l2)

  def evaluate_fn(state, round_num):
    # Test RMSE of the released parameters after every round (NumPy,
    # on-device reconstruction): the learning curve in curves.png.
    del round_num
    params = to_params(state)
    users = user_factors(params, split, config)
    return {'test_rmse': evaluation.rating_metrics(params, users, split.test)['rmse']}

  result = program.run_training(
      process=process, client_ids=clients.client_ids(split.train),
      client_data_fn=client_data_fn, total_rounds=config.rounds, output_dir=run_dir,
      clients_per_round=config.clients_per_round, seed=config.seed,
      rounds_per_checkpoint=config.rounds_per_checkpoint, evaluate_fn=evaluate_fn,
      progress_keys=('loss', 'rmse', 'test_rmse'), log=log)
  # A directory already trained past `rounds` keeps (and reports) its newest state.
  return to_params(result.state), max(config.rounds, result.resumed_from)

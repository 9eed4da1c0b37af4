"""Federated training of the scorecard: what `python -m tff_credit.train` runs.

Orchestration only; the rounds themselves are the shared training program
(`tff_common.program.run_training`). Per round, besides the training metrics
the banks report, the global model is evaluated federatedly on every bank's
test rows (`tff.learning.algorithms.build_fed_eval`: each bank scores its own
rows; only metric sums, e.g. AUC's confusion counts, reach the server).

`output_dir` receives config.json and schema.json at the start (a rerun with
other settings is refused, so a resume never mixes two experiments),
checkpoints/, metrics.csv and tensorboard/ during training, and
model_weights.npz at the end.
"""

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_common import files
from tff_common import program
from tff_common import runtime
from tff_common.errors import InputError
from tff_credit import algorithms
from tff_credit import federation as federation_lib
from tff_credit import model as model_lib
from tff_credit import preprocess


@dataclasses.dataclass
class TrainConfig:
  model: str = 'logreg'
  rounds: int = 40
  clients_per_round: Optional[int] = None
  local_epochs: int = 1
  batch_size: int = 32
  rounds_per_checkpoint: int = 1
  seed: int = 0


CONFIG_FILE = 'config.json'
SCHEMA_FILE = 'schema.json'
WEIGHTS_FILE = 'model_weights.npz'


def _config_json(data: federation_lib.DataConfig, algorithm: algorithms.AlgorithmConfig,
                 train: TrainConfig) -> dict:
  return {'data': dataclasses.asdict(data), 'algorithm': dataclasses.asdict(algorithm),
          'train': dataclasses.asdict(train)}


def load_config(output_dir: str) -> tuple[federation_lib.DataConfig, algorithms.AlgorithmConfig, TrainConfig]:
  path = os.path.join(output_dir, CONFIG_FILE)
  try:
    with open(path) as f:
      value = json.load(f)
  except FileNotFoundError:
    raise InputError(f'{path}: not found; is {output_dir} the --output_dir of a '
                     'finished `python -m tff_credit.train` run?') from None
  return (federation_lib.DataConfig(**value['data']),
          algorithms.AlgorithmConfig(**value['algorithm']), TrainConfig(**value['train']))


def load_schema(output_dir: str) -> preprocess.Schema:
  """The encoding a trained model was trained with."""
  with open(os.path.join(output_dir, SCHEMA_FILE)) as f:
    return preprocess.Schema.from_json(json.load(f))


def client_data_fn_for(fed: federation_lib.Federation, *, algorithm: str, train: TrainConfig
                       ) -> Callable[[list, int], list]:
  """`(bank names, round) -> datasets`: what each sampled bank trains on."""
  client_data = fed.client_data()
  sizes = {name: len(fed.train[name][1]) for name in fed.bank_names}
  index = {name: i for i, name in enumerate(fed.bank_names)}

  def client_data_fn(bank_names, round_num):
    datasets = []
    for name in bank_names:
      dataset = client_data.create_tf_dataset_for_client(name)
      if algorithm == 'fedsgd':
        # One batch holding every row: the bank's full-batch gradient.
        datasets.append(dataset.batch(sizes[name]))
        continue
      # Shuffling is seeded by (seed, round, bank) so a resumed run replays it.
      shuffle_seed = (train.seed * 1_000_003 + round_num * 1_009 + index[name]) % (2**31 - 1)
      datasets.append(dataset.shuffle(sizes[name], seed=shuffle_seed, reshuffle_each_iteration=True)
                      .repeat(train.local_epochs).batch(train.batch_size))
    return datasets

  return client_data_fn


def federated_evaluator(fed: federation_lib.Federation, model_fn, *, batch_size: int = 256):
  """`(learning-process state weights) -> {'test/auc', 'test/log_loss'}` over all banks."""
  eval_process = tff.learning.algorithms.build_fed_eval(model_fn)
  eval_state = eval_process.initialize()
  test_sets = [tf.data.Dataset.from_tensor_slices((x, y[:, None])).batch(batch_size)
               for x, y in (fed.test[name] for name in fed.bank_names)]

  def evaluate(model_weights) -> dict[str, float]:
    state = eval_process.set_model_weights(eval_state, model_weights)
    output = eval_process.next(state, test_sets)
    metrics = output.metrics['client_work']['eval']['current_round_metrics']
    return {'test/auc': float(metrics['auc']), 'test/log_loss': float(metrics['log_loss'])}

  return evaluate


def train(*, data: federation_lib.DataConfig, algorithm: algorithms.AlgorithmConfig,
          train_config: TrainConfig, output_dir: str,
          log: Callable[[str], None] = program.print_flushed) -> program.TrainingResult:
  """Builds the federation and the process, runs the rounds, saves the model."""
  runtime.install_execution_context()
  wanted = _config_json(data, algorithm, train_config)
  # More (or fewer) rounds continue the same experiment.
  program.check_run_settings(os.path.join(output_dir, CONFIG_FILE), wanted,
                             ignore=('train/rounds',))
  fed = federation_lib.build_federation(data)
  for line in fed.table.dropped:
    log(f'dropped: {line}')
  if fed.table.dropped:
    log(f'dropped {len(fed.table.dropped)} bad rows of {fed.table.source} (--bad_rows=drop)')
  log(f'{fed.table.source}: {fed.table.num_rows} rows, {fed.num_features} features, '
      f'{len(fed.banks)} banks ({data.partition}): ' +
      ', '.join(f'{b.name} {len(b.train_rows)}+{len(b.test_rows)}' for b in fed.banks))

  os.makedirs(output_dir, exist_ok=True)
  files.write_json(os.path.join(output_dir, CONFIG_FILE), wanted)
  files.write_json(os.path.join(output_dir, SCHEMA_FILE), fed.schema.to_json())

  model_fn = model_lib.model_fn_for(model=train_config.model, num_features=fed.num_features,
                                    seed=train_config.seed)
  process = algorithms.build_process(algorithm, model_fn)
  evaluate = federated_evaluator(fed, model_fn)

  result = program.run_training(
      process=process,
      client_ids=fed.bank_names,
      client_data_fn=client_data_fn_for(fed, algorithm=algorithm.algorithm, train=train_config),
      total_rounds=train_config.rounds,
      output_dir=output_dir,
      clients_per_round=train_config.clients_per_round,
      seed=train_config.seed,
      rounds_per_checkpoint=train_config.rounds_per_checkpoint,
      evaluate_fn=lambda state, round_num: evaluate(process.get_model_weights(state)),
      progress_keys=('train/loss', 'test/auc'),
      log=log)
  weights = process.get_model_weights(result.state)
  save_weights(os.path.join(output_dir, WEIGHTS_FILE), list(weights.trainable))
  log(f'saved {os.path.join(output_dir, WEIGHTS_FILE)}')
  return result


def save_weights(path: str, weights: list[np.ndarray]):
  with files.atomic_path(path) as tmp:
    np.savez(tmp, *[np.asarray(w) for w in weights])


def load_weights(path: str) -> list[np.ndarray]:
  try:
    with np.load(path) as archive:
      return [archive[f'arr_{i}'] for i in range(len(archive.files))]
  except FileNotFoundError:
    raise InputError(f'{path}: not found; training has not finished in this --output_dir') from None

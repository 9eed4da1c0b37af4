"""Training runs: the federated trainers and the centralized baseline, into a run directory.

Runs on the Python orchestrator. Federated algorithms are driven by the shared
`tff_common.program.run_training` loop (sampling, checkpoints and resume,
metrics.csv, TensorBoard); this module chooses the process
(`algorithms.build_process`) and the clients' datasets (`clients.py`) and
releases the final global parameters as the run's model.npz. Only the
binaries import it.

Layout (`tff_common.run_dir`): one data split per directory, one run per algorithm:

    DIR/config.json               the data and split settings, shared by every algorithm
    DIR/<algorithm>/              fedrecon, fedavg or centralized: a run directory
"""

import dataclasses
import time
from collections.abc import Callable

from tff_common import checks
from tff_common import dp
from tff_common import program
from tff_common import progress
from tff_common import run_dir as run_dir_lib
from tff_rec import algorithms
from tff_rec import centralized
from tff_rec import clients
from tff_rec import config as config_lib
from tff_rec import evaluation
from tff_rec import params as params_lib
from tff_rec import split as split_lib

Log = Callable[[str], None]


def train(*, data_config: config_lib.DataConfig, train_config: config_lib.TrainConfig,
          output_dir: str, split: split_lib.Split | None = None,
          log: Log = progress.print_flushed) -> params_lib.MFParams:
  """Trains `train_config.algorithm` (resuming if it can) and writes its model.npz.

  `split`, when given, must be the split of `data_config` (a caller that has
  loaded it already); its fingerprint is what the directory stores.
  """
  data_config.check()
  train_config.check()
  if split is None:
    split = split_lib.load_and_split(data_config, log=log)  # bad input stops us before any write
  root = run_dir_lib.RunDir(output_dir)
  # Held while training: a second process is refused before it touches anything.
  with root.lock():
    root.claim(config_lib.data_settings(data_config, split))
    run = root.child(train_config.algorithm)
    # Calibrated (or checked) before anything of the run is written.
    noise_multiplier, guarantee = _privacy(train_config, population=len(split.train))
    # A directory trained before a setting existed resumes with the value it was
    # trained with (its default then: config.PREDATED), never a changed default.
    program.open_run(run, settings=train_config.settings(noise_multiplier=noise_multiplier),
                     config=train_config,
                     defaults=config_lib.TrainConfig.predated_defaults())
    started = time.perf_counter()
    if train_config.algorithm == 'centralized':
      params = centralized.train_mf(split, config=train_config, log=log)
      rounds = 0
      seconds = time.perf_counter() - started
    else:
      params, rounds = _train_federated(split, train_config, run, log=log,
                                        noise_multiplier=noise_multiplier)
      seconds = run.seconds_in_rounds(rounds)
    run.save_model(params_lib.to_arrays(params), algorithm=train_config.algorithm, rounds=rounds,
                   seconds=seconds, privacy=guarantee.to_json(), privacy_text=guarantee.to_text())
    log(f'{train_config.algorithm}: privacy: {guarantee.to_text()}')
    users = evaluation.training_user_factors(params, split, train_config.recon())
    test = evaluation.rating_metrics(params, users, split.test)
    log(f'{train_config.algorithm}: test RMSE {test["rmse"]:.4f} after '
        f'{rounds or train_config.centralized_epochs} {"rounds" if rounds else "epochs"} '
        f'({seconds:.0f} s of training); model in {run.file(run_dir_lib.MODEL)}')
    return params


def train_all(*, data_config: config_lib.DataConfig, train_config: config_lib.TrainConfig,
              fedavg_rounds: int, output_dir: str, split: split_lib.Split | None = None,
              log: Log = progress.print_flushed) -> split_lib.Split:
  """fedrecon (`train_config.rounds`), fedavg (`fedavg_rounds`) and centralized MF
  into one directory, on one split (`split`, or loaded), which is returned."""
  # Every flag before minutes of training: one line for the first out of range.
  data_config.check()
  train_config.check()
  checks.at_least('fedavg_rounds', fedavg_rounds, 1)
  if split is None:
    split = split_lib.load_and_split(data_config, log=log)
  # Centralized MF counts epochs, not rounds; it keeps the others' round count.
  for algorithm, rounds in (('fedrecon', train_config.rounds), ('fedavg', fedavg_rounds),
                            ('centralized', train_config.rounds)):
    log(f'\n== training {algorithm}')
    train(data_config=data_config, output_dir=output_dir, split=split, log=log,
          train_config=dataclasses.replace(train_config, algorithm=algorithm, rounds=rounds))
  return split


def train_baseline_if_missing(output_dir: str, *,
                              log: Log = progress.print_flushed) -> split_lib.Split:
  """Trains centralized MF (the comparison's upper bound) into `output_dir` if it
  is not there yet, with fedrecon's settings when there are any; returns the
  directory's split."""
  root = run_dir_lib.RunDir(output_dir)
  data_config = config_lib.read_data_config(root)
  split = split_lib.load_and_split(data_config, log=log)
  config_lib.check_data(root, split)
  with root.lock():
    if root.child('centralized').exists(run_dir_lib.MODEL):
      return split
    fedrecon = root.child('fedrecon')
    config = (config_lib.read_train_config(root, 'fedrecon')
              if fedrecon.exists(run_dir_lib.CONFIG) else config_lib.TrainConfig())
    log('centralized MF baseline not trained yet in this directory: training it now')
    train(data_config=data_config, output_dir=output_dir, split=split, log=log,
          train_config=dataclasses.replace(config, algorithm='centralized'))
  return split


def _privacy(config: config_lib.TrainConfig, *, population: int):
  """(noise multiplier, guarantee) of a run: user-level DP over the training users."""
  if config.algorithm == 'centralized':
    return dp.client_level_guarantee(dp.DPConfig(), level='user', participants='users',
                                     population=population, clients_per_round=None, rounds=1)
  return dp.client_level_guarantee(
      config, level='user', participants='users', population=population,
      clients_per_round=config.clients_per_round, rounds=config.rounds,
      client_sampling=config.client_sampling)


def _train_federated(split: split_lib.Split, config: config_lib.TrainConfig,
                     run: run_dir_lib.RunDir, log: Log, noise_multiplier: float):
  process, layers = algorithms.build_process(split, config, noise_multiplier=noise_multiplier)
  client_data_fn = clients.training_data_fn(
      split.train, batch_size=config.examples_per_batch(), seed=config.seed,
      global_user_table=config.algorithm == 'fedavg', num_items=split.num_items,
      negatives_per_rating=config.negatives())

  def to_params(state):
    return params_lib.from_weights(algorithms.trainable_weights(process, state),
                                   layers, l2=config.l2, implicit_l2=config.implicit_l2)

  def evaluate_fn(state, round_num):
    # Test RMSE of the released parameters after every round (NumPy,
    # on-device reconstruction): the learning curve in curves.png.
    del round_num
    params = to_params(state)
    users = evaluation.training_user_factors(params, split, config.recon())
    return {evaluation.TEST_RMSE: evaluation.rating_metrics(params, users, split.test)['rmse']}

  result = program.run_training(
      process=process, client_ids=clients.client_ids(split.train),
      client_data_fn=client_data_fn, run=run, config=config, evaluate_fn=evaluate_fn,
      progress_keys=('loss', 'rmse', evaluation.TEST_RMSE), wire=algorithms.wire(config),
      log=log)
  # A directory already trained past `rounds` keeps (and reports) its newest state.
  return to_params(result.state), max(config.rounds, result.resumed_from)

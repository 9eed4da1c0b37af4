"""Federated training of the scorecard: what `python -m tff_credit.train` runs.

Orchestration only; the rounds themselves are the shared training program
(`tff_common.program.run_training`). Per round, besides the training metrics
the banks report, the global model is evaluated federatedly on every bank's
test rows (`tff.learning.algorithms.build_fed_eval`: each bank scores its own
rows; only metric sums, e.g. AUC's confusion counts, reach the server).

The run directory (`tff_common.run_dir`) receives config.json and schema.json
once the data is read (a rerun with other settings is refused, so a resume
never mixes two experiments), checkpoints/, metrics.csv and tensorboard/
during training, and model.npz at the end.

A simulated poisoning bank (`--attack_bank`, `tff_credit.poisoning`) changes
only what that bank trains on or sends; its settings are in config.json, so a
resume stays poisoned and the evaluation says so.
"""

from collections.abc import Callable

import tensorflow as tf
import tensorflow_federated as tff

from tff_common import checks
from tff_common import dp
from tff_common import privacy
from tff_common import program
from tff_common import progress
from tff_common import run_dir as run_dir_lib
from tff_common import seeding
from tff_credit import algorithms
from tff_credit import config as config_lib
from tff_credit import dp_sgd
from tff_credit import federation as federation_lib
from tff_credit import model as model_lib
from tff_credit import poisoning


def client_data_fn_for(fed: federation_lib.Federation, *, algorithm: str,
                       train: config_lib.TrainConfig,
                       record_level_dp: bool = False) -> Callable[[list, int], list]:
  """`(bank names, round) -> datasets`: what each sampled bank trains on.

  Under a simulated poisoning bank (`train.attack_bank`), that bank's rows
  have their labels flipped (`label_flip`), or every bank's data carries its
  update factor, 1 but the attacker's (`scale`, `sign_flip`: the client data
  of `algorithms.build_process(..., poisoned_updates=True)`).

  Under customer-level DP (`record_level_dp`), each bank gets the round's
  Poisson-sampled batches and its noise seed (`tff_credit.dp_sgd.client_data`),
  both from the seed of (seed, round, bank), so a resumed run replays them.
  """
  client_data = fed.client_data()
  sizes = {name: len(fed.train[name][1]) for name in fed.bank_names}
  number = {name: i for i, name in enumerate(fed.bank_names)}
  poisoning.check_bank(train, fed.bank_names)
  with_factors = poisoning.is_model_poisoning(train)

  def client_data_fn(bank_names, round_num):
    datasets = []
    for name in bank_names:
      if record_level_dp:
        x, y = fed.train[name]
        datasets.append(dp_sgd.client_data(
            x, y, sampling_rate=dp_sgd.sampling_rate(sizes[name], train.batch_size),
            steps=dp_sgd.steps_per_round(sizes[name], train.batch_size, train.local_epochs),
            seed=seeding.client_seed(train.seed, round_num, number[name])))
        continue
      dataset = client_data.create_tf_dataset_for_client(name)
      attacker = name == train.attack_bank
      if attacker and train.attack == 'label_flip':
        dataset = poisoning.flip_labels(dataset)
      if algorithm == 'fedsgd':
        # One batch holding every row: the bank's full-batch gradient.
        dataset = dataset.batch(sizes[name])
      else:
        # Shuffled with a seed of (seed, round, bank), so a resumed run replays it.
        seed = seeding.client_seed(train.seed, round_num, number[name])
        dataset = (dataset.shuffle(sizes[name], seed=seed, reshuffle_each_iteration=True)
                   .repeat(train.local_epochs).batch(train.batch_size))
      if with_factors:
        dataset = poisoning.client_data(dataset, poisoning.factor(train) if attacker else 1.0)
      datasets.append(dataset)
    return datasets

  return client_data_fn


def federated_evaluator(fed: federation_lib.Federation, model_fn, *, batch_size: int = 256):
  """`(model weights) -> {'test/auc', 'test/log_loss'}` over every bank's test rows.

  Runs TFF's `build_fed_eval` process, whose `next` has the federated type

    (<state=S@SERVER, client_data={B*}@CLIENTS> -> <state=S@SERVER, metrics=M@SERVER>)

  the server broadcasts the weights in S; each bank (CLIENTS) scores its own
  test batches B and returns metric sums (AUC's confusion counts, the summed
  log loss); their sums reach the SERVER, which finalizes M.
  """
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


def train(*, data: config_lib.DataConfig, algorithm: config_lib.AlgorithmConfig,
          train_config: config_lib.TrainConfig, output_dir: str,
          log: Callable[[str], None] = progress.print_flushed) -> program.TrainingResult:
  """Builds the federation and the process, runs the rounds, saves the model."""
  run = run_dir_lib.RunDir(output_dir)
  config_lib.check(data, algorithm, train_config)
  fed = federation_lib.build_federation(data)  # bad input stops us before anything is written
  poisoning.check_bank(train_config, fed.bank_names)
  for line in fed.table.dropped:
    log(f'dropped: {line}')
  if fed.table.dropped:
    log(f'dropped {len(fed.table.dropped)} bad rows of {fed.table.source} (--bad_rows=drop)')
  log(f'{fed.table.source}: {fed.table.num_rows} rows, {fed.num_features} features, '
      f'{len(fed.banks)} banks ({data.partition}): ' +
      ', '.join(f'{b.name} {len(b.train_rows)}+{len(b.test_rows)}' for b in fed.banks))
  attack = poisoning.describe(train_config)
  if attack:
    log(f'simulation: {attack}')
  # Calibrated (or checked) before anything is written.
  noise_multiplier, guarantee, per_bank = privacy_of(fed, algorithm, train_config)
  settings = config_lib.settings(data, algorithm, train_config,
                                 data_sha256=config_lib.table_sha256(fed.table))
  if algorithm.dp_enabled:
    settings['algorithm'][config_lib.NOISE_MULTIPLIER_IN_USE] = noise_multiplier
  # Held while training: a second process is refused before it touches anything.
  with run.lock():
    program.open_run(run, config=train_config, settings=settings,
                     defaults=config_lib.defaults())
    run.write_json(run_dir_lib.SCHEMA, fed.schema.to_json())

    model_fn = model_lib.model_fn_for(model=train_config.model, num_features=fed.num_features,
                                      seed=train_config.seed)
    record_level_dp = algorithm.dp_enabled and algorithm.dp_level == 'record'
    process = algorithms.build_process(
        algorithm, model_fn, poisoned_updates=poisoning.is_model_poisoning(train_config),
        noise_multiplier=noise_multiplier, batch_size=train_config.batch_size,
        banks_per_round=min(train_config.clients_per_round or len(fed.bank_names),
                            len(fed.bank_names)),
        seed=train_config.seed)
    evaluate = federated_evaluator(fed, model_fn)

    result = program.run_training(
        process=process,
        client_ids=fed.bank_names,
        client_data_fn=client_data_fn_for(fed, algorithm=algorithm.algorithm, train=train_config,
                                          record_level_dp=record_level_dp),
        run=run,
        config=train_config,
        evaluate_fn=lambda state, round_num: evaluate(process.get_model_weights(state)),
        progress_keys=('train/loss', 'test/auc'),
        wire=algorithms.wire(algorithm),
        log=log)
    weights = process.get_model_weights(result.state)
    model_lib.save(run, weights.trainable, model=train_config.model, num_features=fed.num_features,
                   rounds=max(train_config.rounds, result.resumed_from),
                   privacy=guarantee.to_json(), privacy_text=guarantee.to_text(),
                   privacy_per_bank=per_bank)
    log(f'privacy: {guarantee.to_text()}')
    if per_bank:
      log('  per bank: ' + ', '.join(f'{name} ε={eps:.2f}' for name, eps in per_bank.items()))
    log(f'saved {run.file(run_dir_lib.MODEL)}')
  return result


def privacy_of(fed: federation_lib.Federation, algorithm: config_lib.AlgorithmConfig,
               train: config_lib.TrainConfig):
  """(noise multiplier, guarantee, {bank: epsilon} or None) of a run.

  Customer-level (`--dp_level=record`): each bank's DP-SGD is a Poisson-sampled
  Gaussian mechanism over its own rows, composed over every round's local
  steps (all rounds are counted, also when banks are sampled: an upper bound);
  a customer's epsilon is their bank's, the guarantee the largest. Bank-level:
  the DP mean over the banks (`tff_common.dp.client_level_guarantee`).
  """
  if not algorithm.dp_enabled:
    return 0.0, privacy.NONE, None
  if algorithm.dp_level == 'bank':
    z, guarantee = dp.client_level_guarantee(
        algorithm, level='bank', participants='banks', population=len(fed.bank_names),
        clients_per_round=train.clients_per_round, rounds=train.rounds,
        client_sampling=train.client_sampling)
    return z, guarantee, None
  rows = {name: len(fed.train[name][1]) for name in fed.bank_names}
  smallest = min(rows, key=rows.get)
  if train.batch_size > rows[smallest]:
    checks.fail('batch_size', train.batch_size,
                f'at most {rows[smallest]} (the training rows of {smallest}) with '
                '--dp_level=record: the expected batch is a Poisson sample of a bank\'s rows')
  banks = {name: privacy.BankSteps(
      rows=n, batch_size=train.batch_size,
      steps=train.rounds * dp_sgd.steps_per_round(n, train.batch_size, train.local_epochs))
      for name, n in rows.items()}
  delta = (algorithm.dp_delta if algorithm.dp_delta is not None
           else privacy.default_delta(max(rows.values())))
  if algorithm.target_epsilon is not None:
    z = privacy.calibrate_per_bank(algorithm.target_epsilon, banks, delta=delta)
  else:
    z = algorithm.dp_noise_multiplier
  per_bank = privacy.per_bank_epsilons(banks, noise_multiplier=z, delta=delta)
  return z, per_bank.guarantee(clip_norm=algorithm.dp_clip), dict(per_bank.epsilons)

"""Federated training of the scorecard: what `python -m tff_credit.train` runs.

Orchestration only; the rounds themselves are the shared training program
(`tff_common.program.run_training`). Per round, besides the training metrics
the banks report, the global model is evaluated federatedly on every bank's
validation rows (`val/auc`, `val/log_loss`) and test rows (`test/auc`,
`test/log_loss`: the curves) with `tff.learning.algorithms.build_fed_eval`:
each bank scores its own rows; only metric sums, e.g. AUC's confusion counts,
reach the server.

Model selection (`--select`, `config.selection`): the reported model is the
round with the best federated validation AUC (`tff_common.program.Selection`;
test rows never choose), or the last round's (`--select=last`, or no
validation rows: `--val_fraction=0`). Both are saved: model.npz is the
reported one (metadata `selected_round`, `selection`), model_last.npz or
model_best.npz the other.

The run directory (`tff_common.run_dir`) receives config.json and schema.json
once the data is read (a rerun with other settings is refused, so a resume
never mixes two experiments), checkpoints/ (and checkpoints_best/),
metrics.csv and tensorboard/ during training, and the models at the end.

A simulated poisoning bank (`--attack_bank`, `tff_credit.poisoning`) changes
only what that bank trains on or sends; its settings are in config.json, so a
resume stays poisoned and the evaluation says so.
"""

import collections
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
from tff_credit import tensor_client_work


def client_data_fn_for(fed: federation_lib.Federation, *, algorithm: str,
                       train: config_lib.TrainConfig,
                       record_level_dp: bool = False,
                       client_data: str = 'datasets') -> Callable[[list, int], list]:
  """`(bank names, round) -> datasets`: what each sampled bank trains on.

  With `client_data='tensors'` (the process of `algorithms.build_process(...,
  client_data='tensors')`), each bank's round is instead its padded batches
  (`tensor_client_work.client_data`), in the order of the datasets' seeded
  shuffle (`tensor_client_work.shuffled_rows`): the same batches.

  Under a simulated poisoning bank (`train.attack_bank`), that bank's rows
  have their labels flipped (`label_flip`), or every bank's data carries its
  update factor, 1 but the attacker's (`scale`, `sign_flip`: the client data
  of `algorithms.build_process(..., poisoned_updates=True)`).

  Under customer-level DP (`record_level_dp`), each bank gets the round's
  Poisson-sampled batches and its noise seed (`tff_credit.dp_sgd.client_data`),
  both from the seed of (seed, round, bank), so a resumed run replays them.
  """
  rows_of = fed.client_data()
  sizes = {name: len(fed.train[name][1]) for name in fed.bank_names}
  number = {name: i for i, name in enumerate(fed.bank_names)}
  poisoning.check_bank(train, fed.bank_names)
  with_factors = poisoning.is_model_poisoning(train)
  if client_data == 'tensors' and (record_level_dp or with_factors or algorithm == 'fedsgd'):
    raise ValueError('--client_data=tensors runs no fedsgd, DP-SGD or model poisoning '
                     '(config.check refuses them)')

  def client_data_fn(bank_names, round_num):
    datasets = []
    for name in bank_names:
      if client_data == 'tensors':
        x, y = fed.train[name]
        if name == train.attack_bank and train.attack == 'label_flip':
          y = 1.0 - y  # as poisoning.flip_labels
        order = tensor_client_work.shuffled_rows(
            sizes[name], seed=seeding.client_seed(train.seed, round_num, number[name]),
            local_epochs=train.local_epochs)
        datasets.append(tensor_client_work.client_data(x, y, order=order,
                                                       batch_size=train.batch_size))
        continue
      if record_level_dp:
        x, y = fed.train[name]
        datasets.append(dp_sgd.client_data(
            x, y, sampling_rate=dp_sgd.sampling_rate(sizes[name], train.batch_size),
            steps=dp_sgd.steps_per_round(sizes[name], train.batch_size, train.local_epochs),
            seed=seeding.client_seed(train.seed, round_num, number[name])))
        continue
      dataset = rows_of.create_tf_dataset_for_client(name)
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


def federated_evaluator(fed: federation_lib.Federation, model_fn, *, batch_size: int = 256,
                        client_data: str = 'datasets'):
  """`(model weights) -> {'test/auc', 'test/log_loss', 'val/auc', 'val/log_loss'}`.

  Runs TFF's `build_fed_eval` process, whose `next` has the federated type

    (<state=S@SERVER, client_data={B*}@CLIENTS> -> <state=S@SERVER, metrics=M@SERVER>)

  the server broadcasts the weights in S; each bank (CLIENTS) scores its own
  batches B and returns metric sums (AUC's confusion counts, the summed log
  loss); their sums reach the SERVER, which finalizes M. Once over the banks'
  test rows, once over their validation rows (banks without any are left
  out; no `val/` metrics if none has any). With `client_data='tensors'`, the
  same sums from each bank's rows as one tensor
  (`tensor_client_work.build_evaluation`), without TFF's per-dataset cost.
  """
  if client_data == 'tensors':
    evaluate_rows = tensor_client_work.build_evaluation(model_fn)

    def rows(split):
      return [collections.OrderedDict(x=x, y=y[:, None].astype('float32'))
              for x, y in (split[name] for name in fed.bank_names if name in split) if len(y)]

    tensor_splits = {'test': rows(fed.test), 'val': rows(fed.val)}

    def evaluate_tensors(model_weights) -> dict[str, float]:
      result = {}
      for prefix, data in tensor_splits.items():
        if data:
          metrics = evaluate_rows(model_weights, data)
          result[f'{prefix}/auc'] = float(metrics['auc'])
          result[f'{prefix}/log_loss'] = float(metrics['log_loss'])
      return result

    return evaluate_tensors

  eval_process = tff.learning.algorithms.build_fed_eval(model_fn)
  eval_state = eval_process.initialize()

  def datasets(split):
    return [tf.data.Dataset.from_tensor_slices((x, y[:, None])).batch(batch_size)
            for x, y in (split[name] for name in fed.bank_names if name in split)
            if len(y)]

  splits = {'test': datasets(fed.test), 'val': datasets(fed.val)}

  def evaluate(model_weights) -> dict[str, float]:
    state = eval_process.set_model_weights(eval_state, model_weights)
    result = {}
    for prefix, data in splits.items():
      if not data:
        continue
      metrics = eval_process.next(state, data).metrics['client_work']['eval'][
          'current_round_metrics']
      result[f'{prefix}/auc'] = float(metrics['auc'])
      result[f'{prefix}/log_loss'] = float(metrics['log_loss'])
    return result

  return evaluate


# The metric the reported round is selected by (federated, validation rows only).
SELECTION = program.Selection(metric='val/auc', mode='max')


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
      f'{len(fed.banks)} banks ({data.partition}; train+validation+test rows): ' +
      ', '.join(f'{b.name} {len(b.train_rows)}+{len(b.val_rows)}+{len(b.test_rows)}'
                for b in fed.banks))
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
    _check_predated_split(run, data)
    program.open_run(run, config=train_config, settings=settings,
                     defaults=config_lib.defaults())
    run.write_json(run_dir_lib.SCHEMA, fed.schema.to_json())

    model_fn = model_lib.model_fn_for(model=train_config.model, num_features=fed.num_features,
                                      seed=train_config.seed, l2=train_config.l2)
    record_level_dp = algorithm.dp_enabled and algorithm.dp_level == 'record'
    client_data = config_lib.client_data_path(algorithm, train_config)
    log(f'client data: {client_data} (--client_data={algorithm.client_data})')
    process = algorithms.build_process(
        algorithm, model_fn, poisoned_updates=poisoning.is_model_poisoning(train_config),
        noise_multiplier=noise_multiplier, batch_size=train_config.batch_size,
        banks_per_round=min(train_config.clients_per_round or len(fed.bank_names),
                            len(fed.bank_names)),
        seed=train_config.seed, client_data=client_data)
    evaluate = federated_evaluator(fed, model_fn, client_data=client_data)
    # The best round is tracked whenever there are validation rows, so both
    # models exist whichever --select reports.
    has_val = any(len(y) for _, y in fed.val.values())

    result = program.run_training(
        process=process,
        client_ids=fed.bank_names,
        client_data_fn=client_data_fn_for(fed, algorithm=algorithm.algorithm, train=train_config,
                                          record_level_dp=record_level_dp,
                                          client_data=client_data),
        run=run,
        config=train_config,
        evaluate_fn=lambda state, round_num: evaluate(process.get_model_weights(state)),
        progress_keys=('train/loss', 'val/auc', 'test/auc'),
        wire=algorithms.wire(algorithm),
        selection=SELECTION if has_val else None,
        log=log)
    _save_models(run, process, result, fed=fed, data=data, train_config=train_config,
                 privacy=guarantee.to_json(), privacy_text=guarantee.to_text(),
                 privacy_per_bank=per_bank, log=log)
    log(f'privacy: {guarantee.to_text()}')
    if per_bank:
      log('  per bank: ' + ', '.join(f'{name} ε={eps:.2f}' for name, eps in per_bank.items()))
  return result


def _check_predated_split(run: run_dir_lib.RunDir, data: config_lib.DataConfig):
  """Refuses to resume a directory written before validation splits existed
  with validation rows: its banks trained on every non-test row, and carving
  some out now would change its training data mid-run."""
  if not run.exists(run_dir_lib.CONFIG) or data.val_fraction == 0:
    return
  stored = run.read_json(run_dir_lib.CONFIG)
  if isinstance(stored, dict) and 'val_fraction' not in stored.get('data', {'val_fraction': 0}):
    checks.fail('val_fraction', data.val_fraction,
                f'0 to continue the run in {run.path}: it was trained before validation '
                "splits existed (its banks train on all their non-test rows); or use a new "
                '--output_dir')


def _save_models(run: run_dir_lib.RunDir, process, result: program.TrainingResult, *,
                 fed: federation_lib.Federation, data: config_lib.DataConfig,
                 train_config: config_lib.TrainConfig, log: Callable[[str], None], **metadata):
  """model.npz: the reported round's model (`config.selection`); beside it the
  other one (model_last.npz or model_best.npz) when the best round is known."""
  rounds = max(train_config.rounds, result.resumed_from)
  common = dict(model=train_config.model, num_features=fed.num_features, rounds=rounds,
                **metadata)
  last = process.get_model_weights(result.state).trainable
  rule = config_lib.selection(data, train_config)
  if not result.best_round:
    # No validation rows (or no round with a validation AUC): the last round.
    model_lib.save(run, last, selection='last', selected_round=rounds, **common)
    log(f'reporting the model of the last round ({rounds}) in {run.file(run_dir_lib.MODEL)}')
    return
  best = process.get_model_weights(result.best_state).trainable
  about_best = dict(selected_round=result.best_round, selection_metric=SELECTION.metric,
                    selected_value=result.best_value)
  if rule == 'best':
    model_lib.save(run, best, selection='best', **about_best, **common)
    model_lib.save(run, last, file_name=run_dir_lib.MODEL_LAST, selection='last',
                   selected_round=rounds, **common)
    log(f'reporting the model of round {result.best_round} of {rounds} (best '
        f'{SELECTION.metric} {result.best_value:.4f}) in {run.file(run_dir_lib.MODEL)}; '
        f'the last round\'s is in {run.file(run_dir_lib.MODEL_LAST)}')
  else:
    model_lib.save(run, last, selection='last', selected_round=rounds, **common)
    model_lib.save(run, best, file_name=run_dir_lib.MODEL_BEST, selection='best',
                   **about_best, **common)
    log(f'reporting the model of the last round ({rounds}, --select=last) in '
        f'{run.file(run_dir_lib.MODEL)}; the best round\'s ({result.best_round}, '
        f'{SELECTION.metric} {result.best_value:.4f}) is in {run.file(run_dir_lib.MODEL_BEST)}')


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

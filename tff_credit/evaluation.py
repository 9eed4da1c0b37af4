"""Side-by-side evaluation: federated vs each bank alone vs pooled training.

What `python -m tff_credit.evaluate` runs, in the orchestrator, after
training. It rebuilds the same banks from the run's config.json, then trains
the two baselines of the same model family in plain Keras with a comparable
budget (the federated run's `rounds * local_epochs` epochs at the client
learning rate and batch size; for FedSGD, `rounds` full-batch steps at the
server learning rate):

*   local_only: every bank trains on its own rows only (what a bank gets
    without the federation);
*   centralized: one model on the pooled training rows of all banks (the upper
    bound the federation cannot exceed without sharing data).

Each model is scored on every bank's test rows and on the pooled test set
(the union of the banks' test sets; for local_only, each bank's rows scored by
its own model) with AUC, KS, Gini, Brier, log loss, accuracy at the KS-optimal
threshold and the PSI of the score between that bank's train and test rows.

A run trained with a simulated poisoning bank (`tff_credit.poisoning`) says
so at the top of report.md and in summary.json (`setup/attack`); its
baselines are trained on honest rows.
"""

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tff_common import communication
from tff_common import errors
from tff_common import progress
from tff_common import run_dir as run_dir_lib
from tff_common import seeding
from tff_credit import config as config_lib
from tff_credit import data as data_lib
from tff_credit import federation as federation_lib
from tff_credit import metrics as metrics_lib
from tff_credit import model as model_lib
from tff_credit import poisoning
from tff_credit import preprocess

# The systems compared (not model families: those are config.MODELS).
COMPARED = ('federated', 'local_only', 'centralized')
REPORT_KEYS = ('auc', 'ks', 'gini', 'brier', 'log_loss', 'accuracy', 'psi')


@dataclasses.dataclass
class Scores:
  """P(bad) per bank for train and test rows, under one model per bank."""
  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]


def fit_keras(*, x: np.ndarray, y: np.ndarray, model: str, epochs: int, batch_size: int,
              learning_rate: float, seed: int) -> list[np.ndarray]:
  """Trains one model of the family on one set of rows; returns its weights."""
  seeding.set_seed(seed)
  keras_model = model_lib.build_keras_model(model=model, num_features=x.shape[1], seed=seed)
  keras_model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate),
                      loss=tf.keras.losses.BinaryCrossentropy())
  keras_model.fit(x, y[:, None], epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
  return keras_model.get_weights()


def _scores_of(fed: federation_lib.Federation, model: str, weights_by_bank: dict, *,
               what: str) -> Scores:
  def score(split):
    scores = {}
    for name in fed.bank_names:
      scores[name] = model_lib.predict(model=model, weights=weights_by_bank[name],
                                       features=split[name][0])
      if not np.all(np.isfinite(scores[name])):
        # A report of NaN metrics would look like a result; it is a broken model.
        raise errors.InputError(f'the {what} model gives non-finite scores on {name}; '
                                'it cannot be evaluated (its weights are not finite)')
    return scores
  return Scores(train=score(fed.train), test=score(fed.test))


def baseline_budget(algorithm: str, train_config: config_lib.TrainConfig, client_lr: float,
                    server_lr: float, rows: int) -> dict:
  if algorithm == 'fedsgd':
    return {'epochs': train_config.rounds, 'batch_size': rows, 'learning_rate': server_lr}
  return {'epochs': train_config.rounds * train_config.local_epochs,
          'batch_size': train_config.batch_size, 'learning_rate': client_lr}


def evaluate(*, output_dir: str, log: Callable[[str], None] = progress.print_flushed) -> dict:
  """Scores the trained model and the baselines; writes report.md, roc.png, summary.json."""
  run = run_dir_lib.RunDir(output_dir)
  # Held while reading the model and writing the report, so a training in the
  # same directory cannot change the model under us.
  with run.lock(create=False):
    return _evaluate(run, output_dir, log)


def _evaluate(run: run_dir_lib.RunDir, output_dir: str, log: Callable[[str], None]) -> dict:
  data_config, algorithm, train_config, sha256 = config_lib.from_settings(run.read_json(
      run_dir_lib.CONFIG, missing_hint=f'is {output_dir} the --output_dir of a finished '
      '`python -m tff_credit.train` run?'))
  weights, metadata = model_lib.load_with_metadata(run)
  # The rounds the model was trained for (a rerun may have trained further): the
  # baselines get the same budget.
  train_config = dataclasses.replace(train_config,
                                     rounds=metadata.get('rounds', train_config.rounds))
  table = data_lib.load_table(
      data=data_config.data, label_column=data_config.label_column,
      positive_label=data_config.positive_label,
      categorical_columns=data_config.categorical_columns,
      drop_columns=data_config.drop_columns, bad_rows=data_config.bad_rows)
  if sha256 and config_lib.table_sha256(table) != sha256:
    raise errors.InputError(
        f'{table.source}: its content changed since the model in {output_dir} was '
        'trained; evaluate on the data it was trained on, or train again in a new --output_dir')
  # Encoded exactly as training did, with the trained model's own schema.
  schema = preprocess.Schema.from_json(run.read_json(run_dir_lib.SCHEMA))
  fed = federation_lib.build_federation(data_config, table=table, schema=schema)
  model = train_config.model

  scores = {'federated': _scores_of(fed, model, {name: weights for name in fed.bank_names},
                                    what='federated')}
  local_weights = {}
  for i, name in enumerate(fed.bank_names):
    x, y = fed.train[name]
    budget = baseline_budget(algorithm.algorithm, train_config, algorithm.client_lr,
                             algorithm.server_lr, len(y))
    local_weights[name] = fit_keras(x=x, y=y, model=model, seed=train_config.seed + i, **budget)
  scores['local_only'] = _scores_of(fed, model, local_weights, what='local-only')
  x, y = fed.pooled('train')
  budget = baseline_budget(algorithm.algorithm, train_config, algorithm.client_lr,
                           algorithm.server_lr, len(y))
  pooled_weights = fit_keras(x=x, y=y, model=model, seed=train_config.seed, **budget)
  scores['centralized'] = _scores_of(fed, model, {name: pooled_weights for name in fed.bank_names},
                                     what='centralized')

  summary = {name: _summarize(fed, s) for name, s in scores.items()}
  # What the federated model cost on the network (metrics.csv, every round run).
  for key in (communication.BYTES_UP, communication.BYTES_DOWN):
    summary['federated'][key] = run.total(key, train_config.rounds)
  # Its privacy guarantee (models trained before it was recorded had none);
  # the baselines pool or keep every row in the clear.
  summary['federated']['privacy'] = metadata.get('privacy', {'differential_privacy': 'none'})
  summary['federated']['privacy_text'] = metadata.get('privacy_text', 'no differential privacy')
  if metadata.get('privacy_per_bank'):
    summary['federated']['privacy_per_bank'] = metadata['privacy_per_bank']
  summary['setup'] = {
      'data': fed.table.source, 'rows': fed.table.num_rows, 'features': fed.num_features,
      'partition': data_config.partition, 'model': model, 'algorithm': algorithm.algorithm,
      'rounds': train_config.rounds, 'local_epochs': train_config.local_epochs,
      'aggregator': algorithm.aggregator,
      # A simulated poisoning bank (None: every bank honest); the baselines are honest.
      'attack': _attack(train_config),
      'baseline_budget': budget,
      'banks': {b.name: {'train_rows': len(b.train_rows), 'test_rows': len(b.test_rows),
                         'train_bad_rate': float(fed.train[b.name][1].mean()),
                         'description': b.description} for b in fed.banks},
  }
  report = render_report(summary, fed.bank_names)
  run.write_json(run_dir_lib.SUMMARY, summary)
  run.write_text(run_dir_lib.REPORT, report)
  _plot_roc(fed, scores, run, 'roc.png')
  log(report)
  log(f'wrote {output_dir}/report.md, roc.png, summary.json')
  return summary


def _attack(train_config: config_lib.TrainConfig):
  if train_config.attack_bank is None:
    return None
  return {'bank': train_config.attack_bank, 'attack': train_config.attack,
          'update_factor': poisoning.factor(train_config) if poisoning.is_model_poisoning(
              train_config) else None,
          'description': poisoning.describe(train_config)}


def _summarize(fed: federation_lib.Federation, scores: Scores) -> dict:
  banks = {}
  for name in fed.bank_names:
    banks[name] = metrics_lib.score_metrics(fed.test[name][1], scores.test[name],
                                            train_scores=scores.train[name])
  labels = np.concatenate([fed.test[n][1] for n in fed.bank_names])
  pooled_scores = np.concatenate([scores.test[n] for n in fed.bank_names])
  pooled_train = np.concatenate([scores.train[n] for n in fed.bank_names])
  return {'pooled': metrics_lib.score_metrics(labels, pooled_scores, train_scores=pooled_train),
          'banks': banks}


def _cell(value) -> str:
  return 'n/a' if value is None else f'{value:.4f}'


def render_report(summary: dict, bank_names: list[str]) -> str:
  setup = summary['setup']
  lines = ['# Federated credit scoring: federated vs local-only vs centralized', '']
  attack = setup.get('attack')
  if attack:
    lines += [f"**Simulation: {attack['description']}.** The federated model below was trained "
              f"with that poisoning bank (aggregator `{setup['aggregator']}`); the local-only and "
              'centralized baselines are trained on honest rows.', '']
  lines += [
      f"Data: {setup['data']} ({setup['rows']} rows, {setup['features']} features), "
      f"{len(bank_names)} banks, partition `{setup['partition']}`, model `{setup['model']}`, "
      f"algorithm `{setup['algorithm']}`, {setup['rounds']} rounds x {setup['local_epochs']} local epoch(s). "
      f"Baselines: {setup['baseline_budget']['epochs']} epochs, batch {setup['baseline_budget']['batch_size']}, "
      f"lr {setup['baseline_budget']['learning_rate']}.", '',
      '## Pooled test set (union of the banks\' test rows)', '',
      '| model | ' + ' | '.join(REPORT_KEYS) + ' |',
      '|---|' + '---|' * len(REPORT_KEYS)]
  for model in COMPARED:
    row = summary[model]['pooled']
    lines.append(f'| {model} | ' + ' | '.join(_cell(row[k]) for k in REPORT_KEYS) + ' |')
  lines += ['', '## AUC per bank (each bank\'s own test rows)', '',
            '| bank | train rows | test rows | local_only | federated | gain | centralized | AUC s.e. |',
            '|---|---|---|---|---|---|---|---|']
  notes = []
  for name in bank_names:
    info = setup['banks'][name]
    fed_auc = summary['federated']['banks'][name]['auc']
    local_auc = summary['local_only']['banks'][name]['auc']
    gain = None if fed_auc is None or local_auc is None else fed_auc - local_auc
    gain_text = 'n/a' if gain is None else f'{gain:+.4f}'
    lines.append(f"| {name} | {info['train_rows']} | {info['test_rows']} | {_cell(local_auc)} | "
                 f"{_cell(fed_auc)} | {gain_text} | {_cell(summary['centralized']['banks'][name]['auc'])} | "
                 f"{_cell(summary['federated']['banks'][name]['auc_se'])} |")
    for note in summary['federated']['banks'][name]['notes']:
      notes.append(f'{name}: {note}')
  for model in COMPARED:
    lines += ['', f'## {model}: every metric per bank', '',
              '| bank | ' + ' | '.join(REPORT_KEYS) + ' |', '|---|' + '---|' * len(REPORT_KEYS)]
    for name in bank_names:
      row = summary[model]['banks'][name]
      lines.append(f'| {name} | ' + ' | '.join(_cell(row[k]) for k in REPORT_KEYS) + ' |')
  descriptions = [f"{n}: {setup['banks'][n]['description']}" for n in bank_names
                  if setup['banks'][n]['description']]
  if descriptions:
    lines += ['', 'Banks: ' + '; '.join(descriptions) + '.']
  if notes:
    lines += ['', 'Notes: ' + '; '.join(notes) + '.']
  federated = summary['federated']
  lines += ['', f"Communication of the federated model over {setup['rounds']} rounds "
            f"(aggregator `{setup['aggregator']}`): {_megabytes(federated['bytes_up'])} up (bank updates), "
            f"{_megabytes(federated['bytes_down'])} down (model broadcasts)."]
  lines += ['', f"Privacy of the federated model: {federated.get('privacy_text', 'n/a')}."]
  if federated.get('privacy_per_bank'):
    lines += ['', 'Customer-level ε per bank (a customer\'s ε is their bank\'s): ' + ', '.join(
        f'{name} {eps:.2f}' for name, eps in federated['privacy_per_bank'].items()) + '.']
  if federated.get('privacy', {}).get('differential_privacy') == 'bank-level':
    lines += ['', f"Bank-level DP over {len(bank_names)} banks: each bank is one of a handful of "
              'participants, so the accounting gives a large ε for any noise that leaves a '
              'useful model; it is reported for completeness. The meaningful guarantee is '
              'customer-level (`--dp_level=record`).']
  lines += ['', 'AUC s.e.: the Hanley-McNeil standard error of the federated AUC on that bank\'s test rows; a gain '
            'smaller than about twice it is within sampling noise.',
            '', 'KS and accuracy use the KS-optimal threshold of each model on each sample; PSI compares the '
            "score distribution of a bank's train rows (deciles) with its test rows (< 0.1 stable, > 0.25 shifted)."]
  return '\n'.join(lines) + '\n'


def _megabytes(count: float) -> str:
  return f'{count / 1e6:.3f} MB'


def _plot_roc(fed: federation_lib.Federation, scores: dict, run: run_dir_lib.RunDir, name: str):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  panels = ['pooled'] + fed.bank_names
  cols = 3
  rows = (len(panels) + cols - 1) // cols
  figure, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.8 * rows), squeeze=False)
  for ax, panel in zip(axes.flat, panels):
    if panel == 'pooled':
      labels = np.concatenate([fed.test[n][1] for n in fed.bank_names])
    else:
      labels = fed.test[panel][1]
    for model in COMPARED:
      s = (np.concatenate([scores[model].test[n] for n in fed.bank_names]) if panel == 'pooled'
           else scores[model].test[panel])
      auc = metrics_lib.auc(labels, s)
      if auc is None:
        continue
      fpr, tpr, _ = metrics_lib.roc_curve(labels, s)
      ax.plot(fpr, tpr, label=f'{model} AUC {auc:.3f}')
    ax.plot([0, 1], [0, 1], color='grey', linewidth=0.5, linestyle='--')
    ax.set_title(f'{panel} (n={len(labels)})')
    ax.set_xlabel('false positive rate')
    ax.set_ylabel('true positive rate')
    ax.legend(fontsize=7, loc='lower right')
  for ax in list(axes.flat)[len(panels):]:
    ax.axis('off')
  figure.tight_layout()
  run.save_figure(name, figure, dpi=110)
  plt.close(figure)

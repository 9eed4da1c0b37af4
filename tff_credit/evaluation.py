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

Each baseline is selected by the federated run's rule (`config.selection`):
after every round-equivalent (the federated run's `local_epochs` epochs; one
full-batch step for FedSGD) it is scored on its own validation rows (a bank's
model on that bank's, the pooled model on the pooled ones) and the one with
the best validation AUC is kept ('best'), or the last ('last'); the federated
model is the one its training reported (model.npz's `selected_round`). The
report and summary.json (`<model>/selection`) say which round each is from
and its validation AUC.

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
from typing import Optional

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
from tff_credit import personalization
from tff_credit import poisoning
from tff_credit import preprocess

# The systems compared (not model families: those are config.MODELS); each
# personalization method adds `personalized_<method>` after them.
COMPARED = ('federated', 'local_only', 'centralized')
PERSONALIZED = 'personalized_'


def compared(summary: dict) -> list[str]:
  """The models of a summary: COMPARED, then the personalized ones it holds."""
  return [*COMPARED, *(k for k in summary if k.startswith(PERSONALIZED))]
REPORT_KEYS = ('auc', 'ks', 'gini', 'brier', 'log_loss', 'accuracy', 'psi')


@dataclasses.dataclass
class Fit:
  """A baseline trained round-equivalent by round-equivalent, and its selection."""
  weights: list[np.ndarray]   # the selected model's, Keras order
  selected_round: int         # the round-equivalent it is from (1..rounds)
  val_auc: Optional[float]    # its AUC on the validation rows (None: no rows or one class)
  selection: str              # 'best' or 'last'


@dataclasses.dataclass
class Scores:
  """P(bad) per bank for train and test rows, under one model per bank."""
  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]


def fit_keras(*, x: np.ndarray, y: np.ndarray, model: str, epochs: int, batch_size: int,
              learning_rate: float, seed: int, l2: float = 0.0,
              epochs_per_round: int = 1) -> list[np.ndarray]:
  """Trains one model of the family on one set of rows; returns its last weights."""
  return fit_selected(x=x, y=y, model=model, epochs=epochs, batch_size=batch_size,
                      learning_rate=learning_rate, seed=seed, l2=l2,
                      epochs_per_round=epochs_per_round, select='last').weights


class _EveryRound(tf.keras.callbacks.Callback):
  """Scores the model on validation rows after each round-equivalent and
  keeps the weights of the best (strictly better than the earlier ones)."""

  def __init__(self, x_val, y_val, epochs_per_round):
    super().__init__()
    self._x, self._y, self._every = x_val, y_val, epochs_per_round
    self.best_round, self.best_auc, self.best_weights = 0, None, None
    self.last_auc = None

  def on_epoch_end(self, epoch, logs=None):
    if (epoch + 1) % self._every:
      return
    scores = self.model(self._x, training=False).numpy().ravel()
    auc = metrics_lib.auc(self._y, scores) if np.all(np.isfinite(scores)) else None
    self.last_auc = auc
    if auc is not None and (self.best_auc is None or auc > self.best_auc):
      self.best_round, self.best_auc = (epoch + 1) // self._every, auc
      self.best_weights = [w.copy() for w in self.model.get_weights()]


def fit_selected(*, x: np.ndarray, y: np.ndarray, model: str, epochs: int, batch_size: int,
                 learning_rate: float, seed: int, l2: float = 0.0, epochs_per_round: int = 1,
                 val: Optional[tuple[np.ndarray, np.ndarray]] = None,
                 select: str = 'best') -> Fit:
  """Trains one model of the family on one set of rows (SGD, binary
  cross-entropy plus the kernels' `l2` penalty), and selects the model of one
  round-equivalent (`epochs_per_round` epochs): the best validation AUC on
  `val` under `select='best'`, else (or when no round has a validation AUC)
  the last."""
  seeding.set_seed(seed)
  keras_model = model_lib.build_keras_model(model=model, num_features=x.shape[1], seed=seed,
                                            l2=l2)
  keras_model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate),
                      loss=tf.keras.losses.BinaryCrossentropy())
  has_val = val is not None and len(val[1]) > 0
  callbacks = [_EveryRound(val[0], val[1], epochs_per_round)] if has_val else []
  keras_model.fit(x, y[:, None], epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0,
                  callbacks=callbacks)
  rounds = epochs // epochs_per_round
  if has_val and select == 'best' and callbacks[0].best_round:
    chosen = callbacks[0]
    return Fit(weights=chosen.best_weights, selected_round=chosen.best_round,
               val_auc=chosen.best_auc, selection='best')
  return Fit(weights=keras_model.get_weights(), selected_round=rounds,
             val_auc=callbacks[0].last_auc if has_val else None, selection='last')


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
  """What a baseline trains for, round-equivalent by round-equivalent.

  FedSGD: one full-batch step per round at the server learning rate. The
  FedAvg family (fedavg, fedprox, fedadam, fedyogi) and mime_lite: the
  run's local epochs per round, at its batch size and client learning rate
  (plain SGD: the server's optimizer and Mime's momentum have no
  one-model counterpart)."""
  if algorithm == 'fedsgd':
    return {'epochs': train_config.rounds, 'batch_size': rows, 'learning_rate': server_lr,
            'epochs_per_round': 1}
  if algorithm not in config_lib.ALGORITHMS:
    raise ValueError(f'no baseline budget for algorithm {algorithm!r}')
  return {'epochs': train_config.rounds * train_config.local_epochs,
          'batch_size': train_config.batch_size, 'learning_rate': client_lr,
          'epochs_per_round': train_config.local_epochs}


def evaluate(*, output_dir: str,
             personalize: Optional[personalization.PersonalizeConfig] = None,
             log: Callable[[str], None] = progress.print_flushed) -> dict:
  """Scores the trained model, the baselines and each bank's personalized
  models (`personalize`; default `PersonalizeConfig()`); writes report.md,
  roc.png, summary.json and, for a run with validation rows, selection.png."""
  personalize = personalize or personalization.PersonalizeConfig()
  personalize.check()
  run = run_dir_lib.RunDir(output_dir)
  # Held while reading the model and writing the report, so a training in the
  # same directory cannot change the model under us.
  with run.lock(create=False):
    return _evaluate(run, output_dir, log, personalize)


def _evaluate(run: run_dir_lib.RunDir, output_dir: str, log: Callable[[str], None],
              personalize: personalization.PersonalizeConfig) -> dict:
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
  # The federated run's rule; the baselines get the same.
  rule = config_lib.selection(data_config, train_config)
  fitting = dict(model=model, l2=train_config.l2, select=rule)

  scores = {'federated': _scores_of(fed, model, {name: weights for name in fed.bank_names},
                                    what='federated')}
  selections = {'federated': _federated_selection(run, metadata, train_config)}
  local = {}
  for i, name in enumerate(fed.bank_names):
    x, y = fed.train[name]
    budget = baseline_budget(algorithm.algorithm, train_config, algorithm.client_lr,
                             algorithm.server_lr, len(y))
    local[name] = fit_selected(x=x, y=y, val=fed.val.get(name), seed=train_config.seed + i,
                               **fitting, **budget)
  scores['local_only'] = _scores_of(fed, model, {n: f.weights for n, f in local.items()},
                                    what='local-only')
  selections['local_only'] = {
      'rule': rule, 'round': {n: f.selected_round for n, f in local.items()},
      'val_auc': {n: f.val_auc for n, f in local.items()}}
  x, y = fed.pooled('train')
  budget = baseline_budget(algorithm.algorithm, train_config, algorithm.client_lr,
                           algorithm.server_lr, len(y))
  pooled = fit_selected(x=x, y=y, val=fed.pooled('val') if fed.val else None,
                        seed=train_config.seed, **fitting, **budget)
  scores['centralized'] = _scores_of(fed, model, {name: pooled.weights for name in fed.bank_names},
                                     what='centralized')
  selections['centralized'] = {'rule': pooled.selection if rule == 'best' else rule,
                               'round': pooled.selected_round, 'val_auc': pooled.val_auc}
  # What each bank does with the released model on its own premises: its own
  # training and validation rows, its local-only model; scored on its test rows.
  for method in personalize.methods:
    chosen = {name: personalization.personalize(
        method, global_weights=weights, local_weights=local[name].weights, model=model,
        train=fed.train[name], val=fed.val.get(name), config=personalize,
        seed=train_config.seed + i, l2=train_config.l2) for i, name in enumerate(fed.bank_names)}
    key = PERSONALIZED + method
    scores[key] = Scores(train={n: p.predict(fed.train[n][0]) for n, p in chosen.items()},
                         test={n: p.predict(fed.test[n][0]) for n, p in chosen.items()})
    selections[key] = {'rule': method, 'banks': {n: p.summary() for n, p in chosen.items()}}

  summary = {name: _summarize(fed, s) for name, s in scores.items()}
  for name, selection in selections.items():
    summary[name]['selection'] = selection
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
      'aggregator': algorithm.aggregator, 'l2': train_config.l2,
      'val_fraction': data_config.val_fraction, 'selection': rule,
      'personalize': dataclasses.asdict(personalize),
      # A simulated poisoning bank (None: every bank honest); the baselines are honest.
      'attack': _attack(train_config),
      'baseline_budget': budget,
      'banks': {b.name: {'train_rows': len(b.train_rows), 'val_rows': len(b.val_rows),
                         'test_rows': len(b.test_rows),
                         'train_bad_rate': float(fed.train[b.name][1].mean()),
                         'description': b.description} for b in fed.banks},
  }
  report = render_report(summary, fed.bank_names)
  run.write_json(run_dir_lib.SUMMARY, summary)
  run.write_text(run_dir_lib.REPORT, report)
  _plot_roc(fed, scores, run, 'roc.png')
  written = ['report.md', 'roc.png', 'summary.json']
  if _plot_selection(run, summary['federated']['selection'], SELECTION_PLOT):
    written.append(SELECTION_PLOT)
  log(report)
  log(f'wrote {output_dir}/' + ', '.join(written))
  return summary


def _federated_selection(run: run_dir_lib.RunDir, metadata: dict,
                         train_config: config_lib.TrainConfig) -> dict:
  """Which round the federated model is from (model.npz's metadata; a model
  saved before selection existed is the last round's) and its federated
  validation AUC (metrics.csv)."""
  selected = int(metadata.get('selected_round', train_config.rounds))
  rounds, values = run.curve('val/auc')
  by_round = dict(zip(rounds, values))
  return {'rule': metadata.get('selection', 'last'), 'round': selected,
          'val_auc': by_round.get(selected)}


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
      f"lr {setup['baseline_budget']['learning_rate']}. L2 {setup.get('l2', 0.0):g}.", '',
      *_selection_lines(summary, bank_names), '',
      '## Pooled test set (union of the banks\' test rows)', '',
      '| model | ' + ' | '.join(REPORT_KEYS) + ' |',
      '|---|' + '---|' * len(REPORT_KEYS)]
  for model in compared(summary):
    row = summary[model]['pooled']
    lines.append(f'| {model} | ' + ' | '.join(_cell(row[k]) for k in REPORT_KEYS) + ' |')
  personal = [m for m in compared(summary) if m.startswith(PERSONALIZED)]
  lines += ['', '## AUC per bank (each bank\'s own test rows)', '',
            '| bank | train rows | val rows | test rows | local_only | federated | gain | centralized | AUC s.e. |'
            + ''.join(f' {m} | gain |' for m in personal),
            '|---|---|---|---|---|---|---|---|---|' + '---|---|' * len(personal)]
  notes = []
  for name in bank_names:
    info = setup['banks'][name]
    fed_auc = summary['federated']['banks'][name]['auc']
    local_auc = summary['local_only']['banks'][name]['auc']
    gain = None if fed_auc is None or local_auc is None else fed_auc - local_auc
    gain_text = 'n/a' if gain is None else f'{gain:+.4f}'
    lines.append(f"| {name} | {info['train_rows']} | {info.get('val_rows', 0)} | {info['test_rows']} | "
                 f"{_cell(local_auc)} | "
                 f"{_cell(fed_auc)} | {gain_text} | {_cell(summary['centralized']['banks'][name]['auc'])} | "
                 f"{_cell(summary['federated']['banks'][name]['auc_se'])} |" + ''.join(
                     f" {_cell(summary[m]['banks'][name]['auc'])} | "
                     f"{_gain(summary[m]['banks'][name]['auc'], local_auc)} |" for m in personal))
    for note in summary['federated']['banks'][name]['notes']:
      notes.append(f'{name}: {note}')
  for model in compared(summary):
    lines += ['', f'## {model}: every metric per bank', '',
              '| bank | ' + ' | '.join(REPORT_KEYS) + ' |', '|---|' + '---|' * len(REPORT_KEYS)]
    for name in bank_names:
      row = summary[model]['banks'][name]
      lines.append(f'| {name} | ' + ' | '.join(_cell(row[k]) for k in REPORT_KEYS) + ' |')
  lines += _personalization_lines(summary, bank_names)
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


def _selection_lines(summary: dict, bank_names: list[str]) -> list[str]:
  """The model-selection section: each model's round and validation AUC."""
  setup = summary['setup']
  if setup.get('selection', 'last') == 'best':
    rule = (f"the round (or round-equivalent: {setup['local_epochs']} local epoch(s)) with the best "
            'validation AUC, each model on its own validation rows (federated: every bank\'s, '
            'federatedly; local_only: its bank\'s; centralized: the pooled ones); test rows never '
            'choose')
  elif setup.get('val_fraction', 0):
    rule = 'the last round (--select=last); validation AUC for reference'
  else:
    rule = 'the last round (no validation rows: --val_fraction=0)'
  curves = (f' The federated validation and test AUC of every round: {SELECTION_PLOT}.'
            if setup.get('val_fraction', 0) else '')
  lines = ['## Model selection', '', f'Each model reported is {rule}.{curves}', '',
           '| model | selected round | of | validation AUC |', '|---|---|---|---|']
  for model in COMPARED:
    selection = summary[model].get('selection')
    if selection is None:
      continue
    if isinstance(selection['round'], dict):
      for name in bank_names:
        lines.append(f"| {model} ({name}) | {selection['round'][name]} | {setup['rounds']} | "
                     f"{_cell(selection['val_auc'][name])} |")
    else:
      lines.append(f"| {model} | {selection['round']} | {setup['rounds']} | "
                   f"{_cell(selection['val_auc'])} |")
  return lines


def _gain(auc, local_auc) -> str:
  return 'n/a' if auc is None or local_auc is None else f'{auc - local_auc:+.4f}'


def _personalization_lines(summary: dict, bank_names: list[str]) -> list[str]:
  """What each bank chose on its validation rows, per personalization method."""
  personal = [m for m in compared(summary) if m.startswith(PERSONALIZED)]
  if not personal:
    return []
  lines = ['', '## Personalization (each bank, on its own premises)', '',
           'Each bank adapts the released federated model with its own training rows and '
           'chooses on its own validation rows, never its test rows (`tff_credit.personalization`): '
           'finetune continues SGD for the chosen number of epochs; mixture mixes the federated and '
           'the local-only model\'s log-odds with weight a on the federated one. A choice within one '
           'standard error of the best stays closer to the federated model.', '',
           '| bank | ' + ' | '.join(personal) + ' |', '|---|' + '---|' * len(personal)]
  for name in bank_names:
    lines.append(f'| {name} | ' + ' | '.join(
        summary[m]['selection']['banks'][name]['description'] for m in personal) + ' |')
  return lines


def _megabytes(count: float) -> str:
  return f'{count / 1e6:.3f} MB'


# The federated validation and test AUC per round, the selected round marked.
SELECTION_PLOT = 'selection.png'


def _plot_selection(run: run_dir_lib.RunDir, selection: dict, name: str) -> bool:
  """Plots the federated AUC curves of metrics.csv; False (nothing written)
  for a run without validation curves."""
  val_rounds, val = run.curve('val/auc')
  if not val_rounds:
    return False
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  test_rounds, test = run.curve('test/auc')
  figure, ax = plt.subplots(figsize=(6, 3.8))
  ax.plot(val_rounds, val, label='validation AUC (selects)')
  ax.plot(test_rounds, test, label='test AUC (never selects)')
  ax.axvline(selection['round'], color='grey', linestyle='--', linewidth=0.8,
             label=f"reported: round {selection['round']} ({selection['rule']})")
  ax.set_xlabel('round')
  ax.set_ylabel('federated AUC')
  ax.legend(fontsize=8, loc='lower right')
  figure.tight_layout()
  run.save_figure(name, figure, dpi=110)
  plt.close(figure)
  return True


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
    for model in scores:
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

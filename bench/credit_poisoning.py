r"""A poisoning bank against each defence, on the bundled credit data (issue 11).

    .venv/bin/python bench/credit_poisoning.py --output_dir=/tmp/credit_poisoning

Trains the credit job's default run (5 size-skewed banks, logistic regression,
FedAvg, 40 rounds) once per attack x aggregator, through the library behind
`python -m tff_credit.train` (`--attack_bank`, `--attack`, `--aggregator`),
each into OUTPUT_DIR/<aggregator>/<attack> (rerunning resumes or reuses them),
and scores each trained model as `tff_credit.evaluate` scores the federated
one: pooled test AUC (the union of the banks' test rows) and every bank's.

  attacks      none; scale (the attacker's update x --attack_scale, 100);
               sign_flip (its update x -1); label_flip (it trains on flipped labels)
  aggregators  mean, robust, median, trimmed_mean, filtered_mean, secure (those
               of `tff_common.aggregation.NAMES`; --aggregators to choose)

and one more row, attack `excluded` (--lower_bound): the plain mean trained on
every bank but the attacker, with the same rounds and shuffles, scored on
every bank's test rows (the attacker's included). It is the best a defence
that recognises the attacker and discards its update can reach: above it only
a defence that would also use the attacker's data.

The attacker (--attacker) defaults to bank_1, the largest bank (1929 of the
3341 training rows): under the example-weighted mean a bank's update counts
in proportion to its rows, so the largest bank's 100x update moves the mean
the most (58% of the weight, against 25% for bank_2 and 2% for bank_5).
Measured (pooled AUC change under the mean, 40 rounds; scale / sign_flip /
label_flip): bank_1 -0.010 / -0.450 / -0.664; bank_2 -0.022 / -0.001 /
-0.005; bank_5 -0.008 / 0.000 / 0.000. Only a bank holding most of the
weight can reverse the mean; a boosted honest update barely changes the
ranking (AUC ignores the weights' scale; the log loss does not). Under
median and trimmed_mean every bank counts once, whoever attacks. Measured
for bank_1 (change vs the plain mean without attack, 0.8369): mean without
bank_1 (excluded) -0.0041; filtered_mean none +0.0003, scale +0.0004,
sign_flip -0.0077, label_flip -0.0038.

Writes poisoning.csv, poisoning.md (pooled AUC, its change against the
no-attack run of the same aggregator and of the plain mean, the pooled log
loss, every bank's AUC) and poisoning.png (pooled AUC by attack and defence); prints the table.
A run that diverges (non-finite weights: `errors.TrainingFailed`) is a row
with no AUC, said in the table. Asserts nothing. `--reports` also runs the
evaluation (report.md, naming the attack at its top) in every run directory.
"""

import csv
import os

from absl import flags

from tff_common import cli
from tff_common import errors
from tff_common import files

ATTACKS = ('none', 'scale', 'sign_flip', 'label_flip')
DEFENCES = ('mean', 'robust', 'median', 'trimmed_mean', 'filtered_mean', 'secure')
# The attack column of the lower-bound row: the attacker left out of the federation.
EXCLUDED = 'excluded'

_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Runs, poisoning.csv/.md/.png.',
                                  required=True)
_ATTACKER = flags.DEFINE_string('attacker', 'bank_1', 'The poisoning bank.')
_ATTACK_SCALE = flags.DEFINE_float('attack_scale', None,
                                   'The scale attack\'s factor (default 100).')
_ROUNDS = flags.DEFINE_integer('rounds', 40, 'Rounds per run (the credit default).')
_ATTACKS = flags.DEFINE_list('attacks', list(ATTACKS), 'Attacks to run (none is the reference).')
_AGGREGATORS = flags.DEFINE_list('aggregators', None,
                                 'Aggregators to run (default: those of DEFENCES that exist).')
_REPORTS = flags.DEFINE_bool('reports', False,
                             'Also write each run\'s report.md (evaluation with its baselines).')
_LOWER_BOUND = flags.DEFINE_bool('lower_bound', True,
                                 'Also train the plain mean without the attacker (the row '
                                 f'"mean / {EXCLUDED}": the best a discarding defence can do).')


def _train(aggregator, attack, out):
  """Trains one run (or reuses it); returns the trained weights, or None if it diverged."""
  from tff_common import run_dir
  from tff_credit import config
  from tff_credit import model
  from tff_credit import training
  poisoning = {} if attack == 'none' else dict(
      attack_bank=_ATTACKER.value, attack=attack,
      attack_scale=_ATTACK_SCALE.value if attack == 'scale' else None)
  try:
    training.train(data=config.DataConfig(), algorithm=config.AlgorithmConfig(aggregator=aggregator),
                   train_config=config.TrainConfig(rounds=_ROUNDS.value, **poisoning),
                   output_dir=out, log=lambda line: None)
  except errors.TrainingFailed as e:
    print(f'   diverged: {e}', flush=True)
    return None
  if _REPORTS.value:
    from tff_credit import evaluation
    evaluation.evaluate(output_dir=out, log=lambda line: None)
  return model.load(run_dir.RunDir(out))


def _train_without_attacker(fed):
  """The trained weights of the default run (plain mean) on every bank but the
  attacker: the same process, rounds, seed and per-bank shuffles as `_train`'s
  runs (a bank's shuffle seed is its number among all the banks), in memory."""
  import numpy as np

  from tff_common import program
  from tff_common import seeding
  from tff_credit import algorithms
  from tff_credit import config
  from tff_credit import model
  from tff_credit import training
  train_config = config.TrainConfig(rounds=_ROUNDS.value)
  algorithm = config.AlgorithmConfig()
  seeding.set_seed(train_config.seed)  # as `program.open_run`
  model_fn = model.model_fn_for(model=train_config.model, num_features=fed.num_features,
                                seed=train_config.seed)
  process = algorithms.build_process(algorithm, model_fn)
  client_data_fn = training.client_data_fn_for(fed, algorithm=algorithm.algorithm,
                                               train=train_config)
  honest = [name for name in fed.bank_names if name != _ATTACKER.value]
  state = process.initialize()
  for round_num in range(1, train_config.rounds + 1):
    banks = program.sample_clients(honest, clients_per_round=train_config.clients_per_round,
                                   seed=train_config.seed, round_num=round_num)
    state = process.next(state, client_data_fn(banks, round_num)).state
  weights = [np.asarray(w) for w in process.get_model_weights(state).trainable]
  return weights if all(np.all(np.isfinite(w)) for w in weights) else None


def _scores(fed, weights):
  """Pooled test AUC and log loss, and every bank's test AUC (None where the
  scores are not finite). AUC ranks applicants, so it ignores the weights'
  scale; the log loss shows what a boosted update does to the probabilities."""
  import numpy as np

  from tff_credit import metrics
  from tff_credit import model
  scores = {name: model.predict(model='logreg', weights=weights, features=fed.test[name][0])
            for name in fed.bank_names}
  def finite(function, labels, values):
    return function(labels, values) if np.all(np.isfinite(values)) else None
  labels = np.concatenate([fed.test[n][1] for n in fed.bank_names])
  pooled = np.concatenate([scores[n] for n in fed.bank_names])
  return (finite(metrics.auc, labels, pooled), finite(metrics.log_loss, labels, pooled),
          {name: finite(metrics.auc, fed.test[name][1], scores[name]) for name in fed.bank_names})


def main(argv):
  del argv
  from tff_common import aggregation
  from tff_credit import config
  from tff_credit import federation
  aggregators = _AGGREGATORS.value or [a for a in DEFENCES if a in aggregation.NAMES]
  for name in aggregators:
    config.AlgorithmConfig(aggregator=name).check()
  for attack in _ATTACKS.value:
    if attack not in ATTACKS:
      raise errors.InputError(f'--attacks: {attack!r} is not one of {", ".join(ATTACKS)}')
  fed = federation.build_federation(config.DataConfig())
  if _ATTACKER.value not in fed.bank_names:
    raise errors.InputError(f'--attacker={_ATTACKER.value!r}: expected one of '
                            f'{", ".join(fed.bank_names)}')
  table = []
  for aggregator in aggregators:
    for attack in _ATTACKS.value:
      out = os.path.join(_OUTPUT_DIR.value, aggregator, attack)
      print(f'== {aggregator} / {attack}', flush=True)
      weights = _train(aggregator, attack, out)
      pooled, log_loss, banks = _scores(fed, weights) if weights is not None else (None, None, {})
      table.append({'aggregator': aggregator, 'attack': attack, 'pooled_auc': pooled,
                    'pooled_log_loss': log_loss,
                    **{f'auc_{n}': banks.get(n) for n in fed.bank_names}})
      print(f'   pooled AUC {_cell(pooled)}, log loss {_cell(log_loss)}', flush=True)
  if _LOWER_BOUND.value:
    print(f'== mean / {EXCLUDED} (every bank but {_ATTACKER.value})', flush=True)
    weights = _train_without_attacker(fed)
    pooled, log_loss, banks = _scores(fed, weights) if weights is not None else (None, None, {})
    table.append({'aggregator': 'mean', 'attack': EXCLUDED, 'pooled_auc': pooled,
                  'pooled_log_loss': log_loss,
                  **{f'auc_{n}': banks.get(n) for n in fed.bank_names}})
    print(f'   pooled AUC {_cell(pooled)}, log loss {_cell(log_loss)}', flush=True)
  _add_changes(table)
  _write(table, fed.bank_names, aggregators)


def _add_changes(table):
  reference = {r['aggregator']: r['pooled_auc'] for r in table if r['attack'] == 'none'}
  plain = reference.get('mean')
  for row in table:
    mine = reference.get(row['aggregator'])
    row['change_vs_no_attack'] = _difference(row['pooled_auc'], mine)
    row['change_vs_no_attack_mean'] = _difference(row['pooled_auc'], plain)


def _difference(a, b):
  return None if a is None or b is None else a - b


def _cell(value, signed=False):
  if value is None:
    return 'n/a'
  return f'{value:+.4f}' if signed else f'{value:.4f}'


def _write(table, bank_names, aggregators):
  out = _OUTPUT_DIR.value
  columns = ['aggregator', 'attack', 'pooled_auc', 'change_vs_no_attack',
             'change_vs_no_attack_mean', 'pooled_log_loss'] + [f'auc_{n}' for n in bank_names]
  with files.atomic_path(os.path.join(out, 'poisoning.csv')) as tmp, open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows({k: ('' if row[k] is None else row[k]) for k in columns} for row in table)
  lines = [f'Attacker {_ATTACKER.value}; {_ROUNDS.value} rounds of FedAvg (5 size-skewed banks, '
           'logistic regression, bundled data). Change: pooled AUC minus that of the run without '
           'attack under the same aggregator, and under the plain mean. n/a: the run diverged. '
           f'Attack {EXCLUDED}: the plain mean without {_ATTACKER.value} at all (the bound of '
           'any defence that discards it).', '',
           '| aggregator | attack | pooled AUC | change (same aggregator) | change (vs mean) | '
           'pooled log loss | ' + ' | '.join(f'AUC {n}' for n in bank_names) + ' |',
           '|---|---|---|---|---|---|' + '---|' * len(bank_names)]
  for row in table:
    lines.append(f"| {row['aggregator']} | {row['attack']} | {_cell(row['pooled_auc'])} | "
                 f"{_cell(row['change_vs_no_attack'], True)} | "
                 f"{_cell(row['change_vs_no_attack_mean'], True)} | {_cell(row['pooled_log_loss'])} | "
                 + ' | '.join(_cell(row[f'auc_{n}']) for n in bank_names) + ' |')
  files.write_text(os.path.join(out, 'poisoning.md'), '\n'.join(lines) + '\n')
  _plot(table, aggregators, os.path.join(out, 'poisoning.png'))
  print('\n'.join(lines))
  print(f'wrote {out}/poisoning.csv, poisoning.md, poisoning.png')


def _plot(table, aggregators, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  attacks = [a for a in ATTACKS if any(r['attack'] == a for r in table)]
  width = 0.8 / len(attacks)
  figure, axis = plt.subplots(figsize=(9.5, 4.5))
  for i, attack in enumerate(attacks):
    values = []
    for aggregator in aggregators:
      row = next((r for r in table if r['aggregator'] == aggregator and r['attack'] == attack), None)
      values.append(row['pooled_auc'] if row and row['pooled_auc'] is not None else 0.0)
    axis.bar([x + (i - (len(attacks) - 1) / 2) * width for x in range(len(aggregators))], values,
             width, label=attack)
  axis.axhline(0.5, color='gray', linewidth=0.5, linestyle=':')
  plain = next((r['pooled_auc'] for r in table
                if r['aggregator'] == 'mean' and r['attack'] == 'none'), None)
  if plain is not None:
    axis.axhline(plain, color='black', linewidth=0.8, linestyle='--',
                 label=f'mean, no attack ({plain:.3f})')
  bound = next((r['pooled_auc'] for r in table
                if r['attack'] == EXCLUDED and r['pooled_auc'] is not None), None)
  if bound is not None:
    axis.axhline(bound, color='tab:red', linewidth=0.8, linestyle=':',
                 label=f'mean without {_ATTACKER.value} ({bound:.3f})')
  axis.set_xticks(range(len(aggregators)), aggregators)
  axis.set(ylabel='pooled test AUC', ylim=(0.0, 1.0),
           title=f'Poisoning bank {_ATTACKER.value}: pooled AUC by defence (0: diverged)')
  axis.legend(fontsize=8, title='attack', loc='upper left', bbox_to_anchor=(1.01, 1.0))
  axis.grid(axis='y', alpha=0.3)
  figure.tight_layout()
  files.save_figure(figure, path, dpi=110)
  plt.close(figure)


if __name__ == '__main__':
  cli.run(main)

r"""Rounds- and bytes-to-target of each algorithm and compression setting (issue 14).

    .venv/bin/python bench/communication_study.py --job=credit --output_dir=/tmp/comm_credit
    .venv/bin/python bench/communication_study.py --job=rec --output_dir=/tmp/comm_rec

Trains one run per setting on the bundled data (the library calls behind the
train binaries, each into OUTPUT_DIR/<setting>; rerunning resumes them) and
reads each run's metrics.csv: the quality per round and the bytes it moved.
Target: credit, the federated pooled test AUC within 0.005 of the pooled
(centralized) model's; recommendation, test RMSE <= 0.90. Writes study.csv
(one row per setting: quality reached, rounds and MB up/down to the target and
in all) and study.png (quality against MB up), and prints the table.
"""

import csv
import dataclasses
import os

from absl import flags

from tff_common import cli
from tff_common import communication
from tff_common import files
from tff_common import run_dir

_JOB = flags.DEFINE_enum('job', 'credit', ['credit', 'rec'], 'Which job to study.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Runs, study.csv and study.png.',
                                  required=True)
_ROUNDS = flags.DEFINE_integer('rounds', None, 'Rounds per run (default: credit 100, rec 100).')
_SETTINGS = flags.DEFINE_list('settings', None, 'Settings to run (default: all of the job).')

# name -> overrides of the job's algorithm/train config.
CREDIT = {
    'fedsgd': dict(algorithm='fedsgd', weighting='uniform', server_lr=0.5),
    'fedavg_e1': dict(local_epochs=1),
    'fedavg_e2': dict(local_epochs=2),
    'fedavg_e5': dict(local_epochs=5),
    'fedavg_e1_16bit': dict(aggregator='compressed', quantization_bits=16),
    'fedavg_e1_8bit': dict(aggregator='compressed', quantization_bits=8),
    'fedavg_e1_4bit': dict(aggregator='compressed', quantization_bits=4),
    'fedavg_e1_2bit': dict(aggregator='compressed', quantization_bits=2),
    'fedavg_e1_1bit': dict(aggregator='compressed', quantization_bits=1),
    # Fewer rounds (local epochs) and fewer bytes per round (quantization) compound.
    'fedavg_e5_2bit': dict(local_epochs=5, aggregator='compressed', quantization_bits=2),
    'fedavg_e5_1bit': dict(local_epochs=5, aggregator='compressed', quantization_bits=1),
    # Sparsified updates: the largest quarter of each tensor, or a random quarter scaled up.
    'fedavg_e1_top25': dict(aggregator='topk', keep_fraction=0.25),
    'fedavg_e1_rand25': dict(aggregator='randk', keep_fraction=0.25),
    'fedavg_e5_top25': dict(local_epochs=5, aggregator='topk', keep_fraction=0.25),
}
REC = {
    'fedrecon': dict(),
    'fedrecon_8bit': dict(aggregator='compressed', quantization_bits=8),
    'fedrecon_4bit': dict(aggregator='compressed', quantization_bits=4),
    'fedrecon_2bit': dict(aggregator='compressed', quantization_bits=2),
    # A client touches a median 216 of 7,933 item rows (3% of each tensor):
    # the largest 5% keeps nearly every nonzero value.
    'fedrecon_top5': dict(aggregator='topk', keep_fraction=0.05),
}
REC_TARGET_RMSE = 0.90
CREDIT_AUC_MARGIN = 0.005


def _credit(overrides, rounds, out):
  from tff_credit import config
  from tff_credit import training
  algorithm_fields = {f.name for f in dataclasses.fields(config.AlgorithmConfig)}
  algorithm = config.AlgorithmConfig(**{k: v for k, v in overrides.items() if k in algorithm_fields})
  train = config.TrainConfig(rounds=rounds, **{k: v for k, v in overrides.items()
                                               if k not in algorithm_fields})
  training.train(data=config.DataConfig(), algorithm=algorithm, train_config=train,
                 output_dir=out, log=lambda line: None)


def _rec(overrides, rounds, out):
  from tff_rec import config
  from tff_rec import training
  training.train(data_config=config.DataConfig(),
                 train_config=config.TrainConfig(rounds=rounds, **overrides),
                 output_dir=out, log=lambda line: None)


def _credit_target():
  """The pooled model's test AUC (the evaluation's centralized baseline) - margin."""
  from tff_credit import config
  from tff_credit import evaluation
  from tff_credit import federation
  from tff_credit import metrics
  from tff_credit import model
  fed = federation.build_federation(config.DataConfig())
  train = config.TrainConfig()
  x, y = fed.pooled('train')
  budget = evaluation.baseline_budget('fedavg', train, config.AlgorithmConfig().client_lr, 1.0,
                                      len(y))
  weights = evaluation.fit_keras(x=x, y=y, model='logreg', seed=train.seed, **budget)
  tx, ty = fed.pooled('test')
  auc = metrics.auc(ty, model.predict(model='logreg', weights=weights, features=tx))
  print(f'centralized pooled test AUC {auc:.4f}; target {auc - CREDIT_AUC_MARGIN:.4f}')
  return auc - CREDIT_AUC_MARGIN


def _row(name, run, metric, target, higher_is_better):
  rows = run.metrics()
  reached = [r for r in rows if (r[metric] >= target if higher_is_better else r[metric] <= target)]
  first = int(reached[0][run_dir.ROUND]) if reached else None
  last = rows[-1]
  def mb(count):
    return float(f'{count / 1e6:.6g}')  # six digits: a credit run moves kilobytes

  return {
      'setting': name, 'final_quality': round(last[metric], 4), 'rounds': int(last[run_dir.ROUND]),
      'rounds_to_target': first,
      'mb_up_to_target': mb(run.total(communication.BYTES_UP, first)) if first else None,
      'mb_down_to_target': mb(run.total(communication.BYTES_DOWN, first)) if first else None,
      'mb_up_total': mb(run.total(communication.BYTES_UP, len(rows))),
      'mb_down_total': mb(run.total(communication.BYTES_DOWN, len(rows))),
      'bytes_up_per_client': rows[-1][communication.BYTES_UP_PER_CLIENT],
  }


def main(argv):
  del argv
  job = _JOB.value
  settings = CREDIT if job == 'credit' else REC
  chosen = _SETTINGS.value or list(settings)
  rounds = _ROUNDS.value or 100
  if job == 'credit':
    target, metric_name, higher, train = _credit_target(), 'test/auc', True, _credit
  else:
    target, metric_name, higher, train = REC_TARGET_RMSE, 'test_rmse', False, _rec
  table = []
  for name in chosen:
    out = os.path.join(_OUTPUT_DIR.value, name)
    print(f'== {name}', flush=True)
    train(settings[name], rounds, out)
    run = run_dir.RunDir(out if job == 'credit' else os.path.join(out, 'fedrecon'))
    table.append(_row(name, run, metric_name, target, higher))
    print(table[-1], flush=True)
  _write(table, metric_name, target)


def _write(table, metric_name, target):
  path = os.path.join(_OUTPUT_DIR.value, 'study.csv')
  with files.atomic_path(path) as tmp, open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  figure, axis = plt.subplots(figsize=(7, 4.5))
  for row in table:
    run = run_dir.RunDir(os.path.join(_OUTPUT_DIR.value, row['setting'])
                         if _JOB.value == 'credit' else
                         os.path.join(_OUTPUT_DIR.value, row['setting'], 'fedrecon'))
    rows = run.metrics()
    up, total = [], 0.0
    for r in rows:
      total += r[communication.BYTES_UP]
      up.append(total / 1e6)
    axis.plot(up, [r[metric_name] for r in rows], label=row['setting'])
  axis.axhline(target, color='gray', linestyle='--', label='target')
  axis.set_xscale('log')
  axis.set(xlabel='MB up (cumulative, log scale)', ylabel=metric_name,
           title=f'{_JOB.value}: quality against bytes sent by the clients')
  axis.grid(alpha=0.3)
  axis.legend(fontsize=7)
  figure.tight_layout()
  files.save_figure(figure, os.path.join(_OUTPUT_DIR.value, 'study.png'), dpi=110)
  print(f'wrote {path} and study.png')
  header = list(table[0])
  print(' | '.join(header))
  for row in table:
    print(' | '.join(str(row[k]) for k in header))


if __name__ == '__main__':
  cli.run(main)

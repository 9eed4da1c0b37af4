"""tff_credit.study: a one-cell study end to end, the metrics it reads, the goal, the binary."""

import csv
import dataclasses
import os
import subprocess
import sys

import pytest

from tests.tff_credit import helpers
from tff_common import errors
from tff_common import study
from tff_credit import study as credit_study

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_one_cell_study_end_to_end(loans_csv, tmp_path):
  setup = credit_study.Setup(helpers.data_config(loans_csv), helpers.ALGORITHM,
                             helpers.train_config(1))
  grid = study.Grid.of({'algorithm': ['fedavg'], 'partition': ['iid']}, seeds=[2])
  out = str(tmp_path / 'study')
  lines = []
  results = credit_study.run(setup=setup, grid=grid, output_dir=out, log=lines.append)
  assert lines[1].startswith('cell 1/1 algorithm=fedavg partition=iid seed=2: ')
  metrics = results[0].metrics
  for model in ('federated', 'local_only', 'centralized'):
    assert 0.5 <= metrics[f'{model}/pooled/auc'] <= 1
  assert metrics['federated/bank_2/gain'] == pytest.approx(
      metrics['federated/bank_2/auc'] - metrics['local_only/bank_2/auc'])
  # The seed reached the cell's data and training settings.
  cell_dir = os.path.join(out, 'runs', grid.cells()[0].key)
  with open(os.path.join(cell_dir, 'config.json')) as f:
    text = f.read()
  assert '"seed": 2' in text and '"seed": 1' not in text
  with open(os.path.join(out, 'study.md')) as f:
    report = f.read()
  assert '## Goals' in report and 'not measurable**: --partitions has no size_skew' in report
  assert '| iid | ' in report
  with open(os.path.join(out, 'study.csv')) as f:
    assert {r['metric'] for r in csv.DictReader(f)} >= {'federated/pooled/auc',
                                                        'banks/bank_1/train_rows'}
  assert os.path.exists(os.path.join(out, 'study_pooled_auc.png'))
  # A rerun trains nothing; one with more rounds is refused.
  lines = []
  credit_study.run(setup=setup, grid=grid, output_dir=out, log=lines.append)
  assert lines[0].endswith('1 done before, 0 to run')
  longer = dataclasses.replace(setup, train=helpers.train_config(2))
  with pytest.raises(errors.InputError, match='train/rounds: 1 there, 2 now'):
    credit_study.run(setup=longer, grid=grid, output_dir=out, log=lines.append)


def _summary(gains_by_model, local=(0.70, 0.60, 0.55)):
  banks = [f'bank_{i + 1}' for i in range(len(local))]
  summary = {'local_only': {'pooled': {'auc': 0.7},
                            'banks': {b: {'auc': a} for b, a in zip(banks, local)}},
             'setup': {'banks': {b: {'train_rows': 1000 // (i + 1)}
                                 for i, b in enumerate(banks)}}}
  for model, gains in gains_by_model.items():
    summary[model] = {'pooled': {'auc': 0.8},
                      'banks': {b: {'auc': a + g} for b, a, g in zip(banks, local, gains)}}
  return summary


def _goal(summaries):
  grid = study.Grid.of({'algorithm': ['fedavg'], 'partition': ['size_skew']},
                       seeds=range(len(summaries)))
  results = [study.Result(cell=cell, metrics=credit_study.cell_metrics(s), seconds=1.0)
             for cell, s in zip(grid.cells(), summaries)]
  stats = study.aggregate(results)
  names = list(results[0].metrics)
  return credit_study.goals(stats, algorithms=['fedavg'], partitions=['size_skew'],
                            models=credit_study._ordered_models(names),
                            banks=credit_study._banks(names), seeds=len(summaries))


def test_the_goal_is_judged_on_personalized_models_over_five_seeds():
  met = {'federated': (0.0, 0.0, 0.0), 'personalized_finetune': (0.01, 0.0, 0.06)}
  lines = _goal([_summary(met)] * 5)
  assert lines[0].startswith('Goal: over 5 seeds on the default size_skew split')
  assert len(lines) == 3 and lines[2].startswith('- personalized_finetune: **met**: ')
  assert 'smallest bank bank_3 (333 training rows): +0.060' in lines[2]
  # A bank worse than local-only on average, or too small a gain at the smallest bank.
  assert '**not met**' in _goal([_summary({'personalized_x': (-0.01, 0.1, 0.1)})] * 5)[2]
  assert '**not met**' in _goal([_summary({'personalized_x': (0.0, 0.1, 0.04)})] * 5)[2]
  # Fewer than five seeds, or no personalized model: not measurable.
  assert 'not measurable**: 4 seeds finished' in _goal([_summary(met)] * 4)[2]
  lines = _goal([_summary({'federated': (0.0, 0.0, 0.1)})] * 5)
  assert lines[2].startswith('- personalized: **not measurable**: no personalized model')


def test_partitions_flag_values():
  assert credit_study.parse_partition('label_skew:0.1') == ('label_skew', 0.1)
  assert credit_study.parse_partition('feature_skew') == ('feature_skew', None)
  for bad in ('label_skew:0', 'iid:1', 'nope', 'label_skew:x'):
    with pytest.raises(errors.InputError, match=f"^--partitions='{bad}': expected one of"):
      credit_study.parse_partition(bad)


def test_help():
  result = subprocess.run([sys.executable, '-m', 'tff_credit.study', '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
  assert result.returncode in (0, 1), result.stderr[-2000:]  # absl's --help exits 1
  assert '--partitions' in result.stdout and '--seeds' in result.stdout

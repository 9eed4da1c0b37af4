"""tff_rec.study: a one-cell study end to end, the metrics it reads, the goals, --help."""

import csv
import os

import pytest

from tests.tff_rec import helpers
from tff_common import errors
from tff_common import study
from tff_rec import config as config_lib
from tff_rec import study as rec_study
from tff_rec import synthetic


def test_a_one_cell_study_end_to_end(tmp_path):
  path = synthetic.write(synthetic.synthetic_ratings(), str(tmp_path / 'ml'), 'ml-1m')
  setup = rec_study.Setup(config_lib.DataConfig(data=path, test_fraction=0.25,
                                                heldout_users_fraction=0.125),
                          helpers.tiny_config(rounds=1))
  grid = study.Grid.of({'algorithm': ['fedrecon']}, seeds=[3])
  out = str(tmp_path / 'study')
  lines = []
  results = rec_study.run(setup=setup, grid=grid, output_dir=out, log=lines.append)
  assert lines[1].startswith('cell 1/1 algorithm=fedrecon seed=3: ')
  metrics = results[0].metrics
  for group in ('users', 'heldout'):
    assert 0 <= metrics[f'fedrecon/{group}/hr@10'] <= 1
    assert 0 <= metrics[f'popularity/{group}/hr@10'] <= 1
    assert metrics[f'fedrecon/{group}/rmse'] > 0
  # The seed reached the cell's split and training settings.
  cell_dir = os.path.join(out, 'runs', grid.cells()[0].key)
  assert config_lib.read_data_config(rec_study.run_dir_lib.RunDir(cell_dir)).seed == 3
  assert config_lib.read_train_config(rec_study.run_dir_lib.RunDir(cell_dir), 'fedrecon').seed == 3
  with open(os.path.join(out, 'study.md')) as f:
    report = f.read()
  assert '| fedrecon | ' in report and '| popularity | — | — | ' in report
  assert 'but the goal is judged at the default budget only' in report
  with open(os.path.join(out, 'study.csv')) as f:
    assert 'fedrecon/heldout/ndcg@10' in {r['metric'] for r in csv.DictReader(f)}
  assert os.path.exists(os.path.join(out, 'study_hr10.png'))
  # A rerun trains nothing.
  lines = []
  rec_study.run(setup=setup, grid=grid, output_dir=out, log=lines.append)
  assert lines[0].endswith('1 done before, 0 to run')


def _rows(hr, held, popularity_held, rmse, model='fedrecon'):
  def stat(v):
    return study.Stat(v, 0.01, 5)
  return [(model, {'users/hr@10': stat(hr), 'heldout/hr@10': stat(held),
                   'users/rmse': stat(rmse)}),
          ('popularity', {'heldout/hr@10': stat(popularity_held)})]


def test_the_goals():
  default = rec_study.Setup(config_lib.DataConfig(), config_lib.TrainConfig())
  assert '- fedrecon: **met**' in rec_study.goals(_rows(0.76, 0.70, 0.64, 0.885), setup=default,
                                                  seeds=5)[2]
  for rows in (_rows(0.74, 0.70, 0.64, 0.885), _rows(0.76, 0.68, 0.64, 0.885),
               _rows(0.76, 0.70, 0.64, 0.889)):
    assert '**not met**' in rec_study.goals(rows, setup=default, seeds=5)[2]
  # A personalized variant is judged too; other budgets are not judged.
  lines = rec_study.goals(_rows(0.8, 0.8, 0.6, 0.85, model='fedrecon+finetune'),
                          setup=default, seeds=5)
  assert lines[2].startswith('- fedrecon+finetune: **met**: HR@10 0.800')
  short = rec_study.Setup(config_lib.DataConfig(), config_lib.TrainConfig(rounds=50))
  line = rec_study.goals(_rows(0.76, 0.70, 0.64, 0.885), setup=short, seeds=5)[2]
  assert '**not measurable**' in line and 'these would meet it' in line


def test_models_are_found_generically():
  summary = {'fedrecon': {'rmse': 0.9, 'hr@10': 0.7, 'heldout': {'rmse': 1.0, 'hr@10': 0.6}},
             'fedrecon+finetune': {'rmse': 0.89, 'hr@10': 0.72, 'heldout': {'hr@10': 0.65}},
             'popularity': {'hr@10': 0.5, 'heldout': {'hr@10': 0.55}},
             'global_mean_rmse': 1.05, 'split': {'training_users': 10}}
  metrics = rec_study.cell_metrics(summary)
  assert metrics['fedrecon+finetune/heldout/hr@10'] == 0.65
  assert metrics['popularity/heldout/hr@10'] == 0.55
  assert 'popularity/users/rmse' not in metrics and metrics['global_mean/users/rmse'] == 1.05


def test_bad_flags():
  with pytest.raises(errors.InputError, match='each cell sets algorithm'):
    study.apply_overrides('set', ['algorithm=fedavg'],
                          [config_lib.DataConfig(), config_lib.TrainConfig()],
                          per_cell=['seed', 'algorithm'])


def test_help():
  result = helpers.run_module('tff_rec.study', '--help')
  assert result.returncode in (0, 1), result.stderr[-2000:]  # absl's --help exits 1
  assert '--algorithms' in result.stdout and '--rounds' in result.stdout

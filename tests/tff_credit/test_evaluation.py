"""tff_credit.evaluation: federated vs local-only vs centralized, report and summary."""

import json
import os

import numpy as np
import pytest

from tests.tff_credit.helpers import train
from tests.tff_credit.helpers import write_loans_csv
from tff_common import run_dir
from tff_credit import evaluation
from tff_credit import metrics
from tff_credit import model as model_lib


def test_evaluate_report_and_summary(tff_context, tmp_path):
  del tff_context
  path = write_loans_csv(tmp_path / 'loans.csv', rows=900)
  train(path, tmp_path / 'run', 4)
  summary = evaluation.evaluate(output_dir=str(tmp_path / 'run'), log=lambda line: None)
  with open(tmp_path / 'run' / 'summary.json') as f:
    on_disk = json.load(f)
  for model in ('federated', 'local_only', 'centralized'):
    assert set(on_disk[model]['banks']) == {'bank_1', 'bank_2', 'bank_3'}
    for key in ('auc', 'ks', 'gini', 'brier'):
      assert key in on_disk[model]['pooled']
    assert 0.5 < on_disk[model]['pooled']['auc'] <= 1.0
  assert summary['federated']['pooled']['gini'] == pytest.approx(
      2 * summary['federated']['pooled']['auc'] - 1)
  # Bytes of the federated model: 4 rounds x 3 banks, each sent the float32 weights
  # (features + bias) and sending back their update and its example count.
  weights = on_disk['setup']['features'] + 1
  assert on_disk['federated']['bytes_down'] == 4 * 3 * 4 * weights
  assert on_disk['federated']['bytes_up'] == 4 * 3 * (4 * weights + 4)
  # Every model says which round (or round-equivalent) it was selected at, by its
  # own validation AUC; the federated one is its training's pick.
  meta = model_lib.load_with_metadata(run_dir.RunDir(str(tmp_path / 'run')))[1]
  assert on_disk['federated']['selection']['round'] == meta['selected_round']
  assert on_disk['federated']['selection']['val_auc'] == pytest.approx(meta['selected_value'])
  assert on_disk['setup']['selection'] == 'best'
  local = on_disk['local_only']['selection']
  assert set(local['round']) == {'bank_1', 'bank_2', 'bank_3'}
  assert all(1 <= r <= 4 for r in local['round'].values())
  assert all(0.5 < v <= 1 for v in local['val_auc'].values())
  assert 1 <= on_disk['centralized']['selection']['round'] <= 4
  report = (tmp_path / 'run' / 'report.md').read_text()
  assert '## Model selection' in report and '| local_only (bank_2) |' in report
  assert 'MB up (bank updates)' in report
  assert '| federated |' in report and 'nan' not in report.lower()
  assert os.path.getsize(tmp_path / 'run' / 'roc.png') > 10_000
  assert os.path.getsize(tmp_path / 'run' / 'selection.png') > 10_000


def test_a_run_trained_further_is_evaluated_with_its_rounds(tff_context, tmp_path):
  del tff_context
  path = write_loans_csv(tmp_path / 'loans.csv', rows=400)
  train(path, tmp_path / 'run', 1)
  train(path, tmp_path / 'run', 2)  # the same command with more rounds: trains further
  summary = evaluation.evaluate(output_dir=str(tmp_path / 'run'), log=lambda line: None)
  # The baselines get the budget of the 2 rounds the model was trained for.
  assert summary['setup']['rounds'] == 2 and summary['setup']['baseline_budget']['epochs'] == 2


def test_a_baseline_selected_by_validation_is_no_worse_there_than_its_last_round():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 4)).astype(np.float32)
  y = (x[:, 0] + rng.normal(size=200) > 0.5).astype(np.float32)
  common = dict(x=x[:150], y=y[:150], val=(x[150:], y[150:]), model='logreg', epochs=6,
                batch_size=16, learning_rate=0.5, seed=0, epochs_per_round=2)
  best = evaluation.fit_selected(select='best', **common)
  last = evaluation.fit_selected(select='last', **common)
  assert last.selection == 'last' and last.selected_round == 3  # 6 epochs, 2 per round
  assert best.selection == 'best' and 1 <= best.selected_round <= 3
  assert best.val_auc >= last.val_auc
  scores = model_lib.predict(model='logreg', weights=best.weights, features=x[150:])
  assert metrics.auc(y[150:], scores) == pytest.approx(best.val_auc)
  # Without validation rows: the last round, no AUC.
  plain = evaluation.fit_selected(**{**common, 'val': None})
  assert (plain.selection, plain.selected_round, plain.val_auc) == ('last', 3, None)

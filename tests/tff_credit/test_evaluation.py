"""tff_credit.evaluation: federated vs local-only vs centralized, report and summary."""

import json
import os

import pytest

from tests.tff_credit.helpers import train
from tests.tff_credit.helpers import write_loans_csv
from tff_credit import evaluation


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
  report = (tmp_path / 'run' / 'report.md').read_text()
  assert 'MB up (bank updates)' in report
  assert '| federated |' in report and 'nan' not in report.lower()
  assert os.path.getsize(tmp_path / 'run' / 'roc.png') > 10_000


def test_a_run_trained_further_is_evaluated_with_its_rounds(tff_context, tmp_path):
  del tff_context
  path = write_loans_csv(tmp_path / 'loans.csv', rows=400)
  train(path, tmp_path / 'run', 1)
  train(path, tmp_path / 'run', 2)  # the same command with more rounds: trains further
  summary = evaluation.evaluate(output_dir=str(tmp_path / 'run'), log=lambda line: None)
  # The baselines get the budget of the 2 rounds the model was trained for.
  assert summary['setup']['rounds'] == 2 and summary['setup']['baseline_budget']['epochs'] == 2

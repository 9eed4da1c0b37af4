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
  report = (tmp_path / 'run' / 'report.md').read_text()
  assert '| federated |' in report and 'nan' not in report.lower()
  assert os.path.getsize(tmp_path / 'run' / 'roc.png') > 10_000

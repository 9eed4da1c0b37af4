"""tff_rec.report: fedrecon, fedavg, centralized and popularity compared on one split."""

import json
import os

import pytest

from tests.tff_rec import helpers
from tff_rec import config as config_lib
from tff_rec import personalization
from tff_rec import report
from tff_rec import synthetic
from tff_rec import training


def test_report_compares_the_four_models(tmp_path):
  ratings_path = synthetic.write(synthetic.synthetic_ratings(), str(tmp_path / 'ml'), 'ml-latest')
  data_config = config_lib.DataConfig(data=ratings_path, test_fraction=0.25,
                                      heldout_users_fraction=0.125)
  out = str(tmp_path / 'run')
  for algorithm, rounds in (('fedrecon', 3), ('fedavg', 2)):
    training.train(data_config=data_config,
                   train_config=helpers.tiny_config(algorithm=algorithm, rounds=rounds),
                   output_dir=out, log=lambda s: None)
  # As tff_rec.evaluate does: the centralized baseline is trained if missing.
  split = training.train_baseline_if_missing(out, log=lambda s: None)
  personalize = personalization.PersonalizeConfig(personalize=['budget', 'finetune'],
                                                  budget_draws=2)
  results, report_text = report.write(out, split=split, personalize=personalize,
                                      log=lambda s: None)
  with open(os.path.join(out, 'summary.json')) as f:
    summary = json.load(f)
  for name in ('fedrecon', 'fedavg', 'centralized'):
    assert {'rmse', 'mae', 'hr@10', 'ndcg@10'} <= set(summary[name])
    assert 0 < summary[name]['rmse'] < 3 and 0 <= summary[name]['hr@10'] <= 1
    assert summary[name]['heldout']['rmse'] > 0
  assert {'hr@10', 'ndcg@10'} <= set(summary['popularity'])
  # Each personalization method is a model of the same shape as fedrecon's.
  for method in personalization.METHODS:
    name = f'fedrecon+{method}'
    assert set(report.COLUMNS) <= set(summary[name]) and summary[name]['heldout']['rmse'] > 0
    assert set(summary[name]['heldout']) == set(summary['fedrecon']['heldout'])
    assert 0 <= summary[name]['hr@10'] <= 1
    assert summary[name]['personalization']['method'] == method
  assert summary['fedrecon+budget']['personalization']['draws'] == 2
  assert list(summary)[:3] == ['fedrecon', 'fedrecon+budget', 'fedrecon+finetune']
  # FedRecon's reported RMSE is TFF's federated evaluation; the on-device
  # NumPy reconstruction agrees with it.
  users = results['fedrecon']['users']
  assert users['rmse'] == pytest.approx(users['rmse_on_device_check'], abs=1e-4)
  assert users['rated_loss'] == pytest.approx(users['rated_loss_on_device_check'], abs=1e-4)
  # FedRecon's clients send the item parameters of both heads and the offset (float32)
  # and their example count: 3 rounds of 6 users.
  items, dim = summary['split']['items'], helpers.TINY['dim']
  per_client = 4 * (2 * items * dim + 2 * items + 1)
  assert summary['fedrecon']['bytes_down'] == 3 * 6 * per_client
  assert summary['fedrecon']['bytes_up'] == 3 * 6 * (per_client + 4)
  # FedAvg's also carry the user table: more bytes per round.
  assert summary['fedavg']['bytes_up'] / 2 > summary['fedrecon']['bytes_up'] / 3
  with open(os.path.join(out, 'report.md')) as f:
    text = f.read()
  assert text == report_text
  assert '| centralized |' in text and '## Held-out users' in text
  assert text.count('| fedrecon+budget |') == 2 and text.count('| fedrecon+finetune |') == 2
  assert os.path.getsize(os.path.join(out, 'curves.png')) > 0

"""tff_credit on small synthetic banks: loading, federated statistics, training, resume."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tff_common.errors import InputError
from tff_credit import data
from tff_credit import preprocess


def _write_csv(path, rows=600, seed=0, extra_lines=()):
  rng = np.random.default_rng(seed)
  income = rng.lognormal(5, 0.5, rows)
  age = rng.integers(20, 70, rows)
  region = rng.choice(['north', 'south', 'east'], rows)
  logit = -1.0 - 1.2 * (np.log(income) - 5) / 0.5 + 0.8 * (region == 'south') - 0.02 * (age - 45)
  bad = rng.random(rows) < 1 / (1 + np.exp(-logit))
  lines = ['id,income,age,region,outcome']
  for i in range(rows):
    income_text = '' if i % 17 == 0 else f'{income[i]:.2f}'  # some missing values
    lines.append(f'{i},{income_text},{age[i]},{region[i]},{"default" if bad[i] else "paid"}')
  lines.extend(extra_lines)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def _load(path, **kwargs):
  return data.load_table(data=str(path), label_column='outcome', positive_label='default',
                         drop_columns=['id'], **kwargs)


def test_csv_types_labels_and_missing_values(tmp_path):
  table = _load(_write_csv(tmp_path / 'loans.csv'))
  assert table.numeric_columns == ['income', 'age'] and table.categorical_columns == ['region']
  assert table.num_rows == 600 and table.negative_label == 'paid'
  assert np.isnan(table.numeric[0, 0]) and np.isnan(table.numeric[:, 0]).sum() == len(range(0, 600, 17))
  assert set(np.unique(table.labels)) == {0, 1}


@pytest.mark.parametrize('bad_line,message', [
    ('600,abc,41,north,paid', "line 602: column 'income' has 'abc'; expected a number"),
    ('600,120.5,41,north,maybe', "line 602: column 'outcome' has label 'maybe'; expected 'default' or 'paid'"),
    ('600,120.5,41,north', 'line 602: expected 5 fields, found 4'),
])
def test_bad_row_is_one_clear_error_or_counted_drop(tmp_path, bad_line, message):
  path = _write_csv(tmp_path / 'loans.csv', extra_lines=[bad_line])
  with pytest.raises(InputError) as error:
    _load(path)
  assert message in str(error.value) and str(path) in str(error.value)
  table = _load(path, bad_rows='drop')
  assert table.num_rows == 600 and len(table.dropped) == 1 and message in table.dropped[0]


def test_missing_label_column_names_the_columns(tmp_path):
  path = _write_csv(tmp_path / 'loans.csv')
  with pytest.raises(InputError, match="no label column 'status'; the header has id, income"):
    data.load_table(data=str(path), label_column='status', positive_label='default')


def test_bundled_data_keeps_every_row():
  table = data.load_table()
  assert table.num_rows == 4454 and table.dropped == []
  assert table.labels.mean() == pytest.approx(1254 / 4454, abs=0.01)  # "bad" is the positive class
  assert np.isnan(table.column('Income')).sum() == 381


def test_federated_statistics_equal_pooled_statistics(tff_context, tmp_path):
  del tff_context
  table = _load(_write_csv(tmp_path / 'loans.csv'))
  rows = [np.arange(0, 100), np.arange(100, 350), np.arange(350, 600)]
  schema = preprocess.federated_schema(table, rows)
  income = table.numeric[:, 0]
  present = income[~np.isnan(income)]
  assert schema.means[0] == pytest.approx(present.mean(), rel=1e-9)
  assert schema.stds[0] == pytest.approx(present.std(), rel=1e-9)
  assert schema.means[1] == pytest.approx(table.numeric[:, 1].mean(), rel=1e-9)
  assert schema.missing_indicators == ['income']
  # The banks' TF computation, summed by TFF, equals count / sum / sum of
  # squares of the pooled rows (computed here in NumPy).
  federated = preprocess.build_federated_sums(table.numeric.shape[1])(
      [table.numeric[r] for r in rows])
  present = ~np.isnan(table.numeric)
  values = np.where(present, table.numeric, 0.0)
  np.testing.assert_allclose(federated, np.concatenate(
      [present.sum(0), values.sum(0), (values ** 2).sum(0)]), rtol=1e-12)
  x = preprocess.encode(table, np.arange(600), schema)
  assert x.shape == (600, 2 + 1 + 3)
  assert abs(x[:, 1].mean()) < 1e-5 and x[:, 1].std() == pytest.approx(1.0, rel=1e-4)
  assert np.all(x[np.isnan(income), 2] == 1.0) and np.all(x[np.isnan(income), 0] == 0.0)


def _train(tmp_path, output_dir, rounds, path):
  from tff_credit import algorithms, federation, training  # pylint: disable=g-import-not-at-top
  config = federation.DataConfig(data=str(path), label_column='outcome', positive_label='default',
                                 drop_columns=['id'], banks=3, partition='iid', seed=1)
  return training.train(
      data=config, algorithm=algorithms.AlgorithmConfig(client_lr=0.2),
      train_config=training.TrainConfig(rounds=rounds, batch_size=32, seed=1),
      output_dir=str(tmp_path / output_dir), log=lambda line: None)


def test_three_banks_raise_auc_and_resume_exactly(tff_context, tmp_path):
  del tff_context
  from tff_credit import training  # pylint: disable=g-import-not-at-top
  path = _write_csv(tmp_path / 'loans.csv', rows=900)
  full = _train(tmp_path, 'full', 6, path)
  aucs = [h['test/auc'] for h in full.history]
  # test/auc is measured after each round; it ends above 0.7, not below round 1's.
  assert aucs[-1] > 0.7 and aucs[-1] > aucs[0] - 1e-9
  losses = [h['client_work/train/loss'] for h in full.history]
  assert losses[-1] < losses[0]
  _train(tmp_path, 'resumed', 3, path)
  resumed = _train(tmp_path, 'resumed', 6, path)
  assert resumed.resumed_from == 3 and resumed.rounds_run == 3
  a = training.load_weights(str(tmp_path / 'full' / training.WEIGHTS_FILE))
  b = training.load_weights(str(tmp_path / 'resumed' / training.WEIGHTS_FILE))
  for wa, wb in zip(a, b):
    np.testing.assert_allclose(wa, wb, atol=1e-6)


def test_evaluate_report_and_summary(tff_context, tmp_path):
  del tff_context
  import json  # pylint: disable=g-import-not-at-top
  from tff_credit import evaluation  # pylint: disable=g-import-not-at-top
  path = _write_csv(tmp_path / 'loans.csv', rows=900)
  _train(tmp_path, 'run', 4, path)
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


def test_train_binary_bad_csv_exits_nonzero_and_writes_nothing(tmp_path):
  path = _write_csv(tmp_path / 'loans.csv', extra_lines=['600,12,41,north,unknown'])
  out = tmp_path / 'out'
  result = subprocess.run(
      [sys.executable, '-m', 'tff_credit.train', f'--data={path}', '--label_column=outcome',
       '--positive_label=default', '--drop_columns=id', f'--output_dir={out}', '--rounds=1'],
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert "line 602: column 'outcome' has label 'unknown'" in result.stderr
  assert 'Traceback' not in result.stderr
  assert not out.exists()


def test_client_data_gives_each_bank_its_own_rows(tff_context, tmp_path):
  del tff_context
  from tff_credit import federation  # pylint: disable=g-import-not-at-top
  path = _write_csv(tmp_path / 'loans.csv')
  fed = federation.build_federation(federation.DataConfig(
      data=str(path), label_column='outcome', positive_label='default', drop_columns=['id'],
      banks=3, partition='size_skew', seed=0))
  client_data = fed.client_data()
  assert client_data.client_ids == ['bank_1', 'bank_2', 'bank_3']
  for name in fed.bank_names:
    rows = list(client_data.create_tf_dataset_for_client(name).as_numpy_iterator())
    x, y = fed.train[name]
    assert len(rows) == len(y)
    np.testing.assert_array_equal(np.stack([r[0] for r in rows]), x)
  # The banks hold disjoint rows of the table.
  seen = np.concatenate([b.train_rows for b in fed.banks] + [b.test_rows for b in fed.banks])
  assert len(seen) == len(set(seen.tolist()))
  # What a sampled bank trains on: FedSGD one batch of all its rows; FedAvg
  # shuffled batches, replayed for the same (seed, round), new the next round.
  from tff_credit import training  # pylint: disable=g-import-not-at-top
  train = training.TrainConfig(batch_size=8, seed=0)
  fedsgd = training.client_data_fn_for(fed, algorithm='fedsgd', train=train)
  (batch,) = list(fedsgd(['bank_2'], 1)[0].as_numpy_iterator())
  np.testing.assert_array_equal(batch[0], fed.train['bank_2'][0])
  fedavg = training.client_data_fn_for(fed, algorithm='fedavg', train=train)
  def order(round_num):
    batches = list(fedavg(['bank_2'], round_num)[0].as_numpy_iterator())
    assert max(len(b[1]) for b in batches) == 8
    return np.concatenate([b[1][:, 0] for b in batches] + [b[0][:, 0] for b in batches])
  np.testing.assert_array_equal(order(3), order(3))
  assert not np.array_equal(order(3), order(4))
  assert sorted(order(3)[:len(fed.train['bank_2'][1])]) == sorted(fed.train['bank_2'][1])

"""tff_credit.attacks: on a tiny two-bank federation, the server recovers every
customer of a FedSGD round exactly (raw values and label), cannot from the
aggregate of both banks, inverts a one-row update but not an eight-row one, and
reads the label of a one-row batch; the observed updates are the hand-computed
gradient and the unrolled FedAvg delta."""

import json
import os

import numpy as np
import pytest

from tests.tff_credit import helpers
from tff_common import aggregation
from tff_common import errors
from tff_common import run_dir
from tff_credit import attacks
from tff_credit import config
from tff_credit import federation
from tff_credit import model


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """A 40-row federation of two banks (15 training rows each, 6 features:
  income with missing values, age, a 3-valued region), a logistic regression
  with random weights (p far from 0.5, unlike the zero start), and an observer
  of the mean aggregator (its processes are built once, on first use)."""
  path = helpers.write_loans_csv(tmp_path_factory.mktemp('attacks') / 'loans.csv', rows=40)
  # No validation rows: every non-test row of a bank is in its update.
  data = helpers.data_config(path, banks=2, val_fraction=0.0)
  fed = federation.build_federation(data)
  rng = np.random.default_rng(3)
  weights = [rng.normal(scale=0.7, size=(fed.num_features, 1)).astype(np.float32),
             np.array([-0.4], np.float32)]
  target = attacks.Target(fed=fed, model='logreg', weights=weights, description='test',
                          settings={})
  algorithm = config.AlgorithmConfig(client_lr=0.1)
  observe = attacks.Observer(algorithm, model='logreg', num_features=fed.num_features,
                             weights=weights)
  return data, target, observe


def _sigmoid(z):
  return 1 / (1 + np.exp(-z))


def test_observed_updates_are_the_gradient_and_the_unrolled_delta(tiny):
  _, target, observe = tiny
  x, y = target.fed.train['bank_1']
  x, y = x[:3], y[:3]
  gradient = observe([(x, y)], local_steps=attacks.FEDSGD)
  w, b = (v.astype(np.float64) for v in target.weights)
  error = _sigmoid(x @ w[:, 0] + b[0]) - y
  np.testing.assert_allclose(gradient[0][:, 0], (error[:, None] * x).mean(0), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(gradient[1], [error.mean()], rtol=1e-5)
  # Two full-batch SGD steps of TFF's FedAvg client = the attacker's unrolled model.
  delta = observe([(x, y)], local_steps=2)
  simulated = attacks.simulated_update([v.astype(np.float64) for v in target.weights],
                                       x[None].astype(np.float64), y[None].astype(np.float64),
                                       local_steps=2, client_lr=0.1)
  for observed, expected in zip(delta, simulated, strict=True):
    np.testing.assert_allclose(observed, expected.numpy(), rtol=1e-4, atol=1e-7)
  assert np.abs(delta[0]).max() > 1e-3  # the comparison is not of two zeros


def test_every_customer_of_a_fedsgd_round_is_recovered_exactly(tiny):
  _, target, observe = tiny
  result = attacks.record_recovery(target, observe, view=attacks.INDIVIDUAL, customers=0,
                                   tolerance=1e-4, seed=0)
  overall = result['all']
  assert overall['customers'] == 30  # every training row of both banks
  assert overall['exact_rate'] == 1.0
  assert overall['raw_exact_rate'] == 1.0  # income to the cent, missing incomes, regions
  assert overall['label_accuracy'] == 1.0
  assert overall['worst_max_error'] < 1e-4
  # The example is a customer's raw record, read back from the update.
  example = result['examples'][0]
  assert example['decoded'][1] == example['raw'][1]
  assert any(np.isnan(target.fed.table.numeric[:, 0]))  # the data do have missing incomes


def test_the_aggregate_of_two_banks_hides_the_records(tiny):
  _, target, observe = tiny
  result = attacks.record_recovery(target, observe, view=attacks.AGGREGATE, customers=12,
                                   tolerance=1e-4, seed=0)
  assert result['rounds'] == 6 and result['all']['customers'] == 12
  assert result['all']['exact_rate'] == 0.0
  assert result['all']['raw_exact_rate'] == 0.0
  assert result['all']['median_max_error'] > 0.1


def test_inversion_recovers_one_row_but_not_eight(tiny):
  _, target, observe = tiny
  fed = target.fed
  bounds = attacks.feature_bounds(fed.schema)
  distances = {}
  for size in (1, 8):
    x, y = fed.train['bank_2'][0][:size], fed.train['bank_2'][1][:size]
    update = observe([(x, y)], local_steps=attacks.FEDSGD)
    inversion = attacks.invert(update, weights=target.weights, groups=1, rows=size,
                               local_steps=attacks.FEDSGD, client_lr=0.1, bounds=bounds,
                               positives=int(y.sum()), restarts=2, iterations=200, seed=1)
    distances[size], _ = attacks.match_rows(inversion.x, x)
    assert inversion.loss < 1e-6  # both match the update: eight rows are not identifiable
  assert distances[1].max() < 1e-3
  assert distances[8].mean() > 0.1


def test_label_shares_of_one_row_batches_are_exact(tiny):
  _, target, observe = tiny
  result = attacks.label_inference(target, observe, view=attacks.INDIVIDUAL, batch_sizes=(1, 4),
                                   trials=3, mean_prediction=0.3, seed=0)
  for bank in ('bank_1', 'bank_2'):
    assert result['rows'][bank]['1']['mean_abs_error'] == 0.0
    assert result['rows'][bank]['1']['exact_rate'] == 1.0
    assert result['rows'][bank]['4']['trials'] == 3


def test_positive_count_follows_the_sign_of_the_bias_gradient():
  # p - y < 0 means a bad row even when the mean prediction would round it away.
  assert attacks.positive_count(-0.05, mean_prediction=0.2, rows=1) == 1
  assert attacks.positive_count(0.05, mean_prediction=0.9, rows=1) == 0
  assert attacks.positive_count(-0.25, mean_prediction=0.5, rows=4) == 3


def test_run_writes_the_report_of_the_view(tiny, tmp_path):
  data, _, _ = tiny
  out = tmp_path / 'attack'
  summary = attacks.run(
      data=data, aggregator=aggregation.AggregatorConfig(),
      attack=attacks.AttackConfig(customers=4, batch_sizes=(1, 2), local_steps=(), trials=1,
                                  restarts=1, iterations=50, label_trials=1),
      output_dir=str(out), log=lambda line: None)
  assert summary['setup']['view'] == attacks.INDIVIDUAL
  assert summary['record_recovery']['all']['exact_rate'] == 1.0
  assert set(summary['inversion']['settings']) == {'fedsgd'}
  stored = json.loads((out / 'summary.json').read_text())
  assert stored['record_recovery']['all']['customers'] == 4
  report = (out / 'report.md').read_text()
  assert "the server sees each bank's own update" in report
  assert '100.0% of 4 customers recovered exactly' in report
  assert (out / attacks.FIGURE).stat().st_size > 0


def test_a_trained_run_is_attacked_with_its_own_schema_and_weights(tiny, tmp_path):
  data, target, _ = tiny
  fed = target.fed
  run = run_dir.RunDir(str(tmp_path / 'trained'))
  run.claim(config.settings(data, config.AlgorithmConfig(client_lr=0.3), config.TrainConfig(),
                            data_sha256=config.table_sha256(fed.table)))
  run.write_json(run_dir.SCHEMA, fed.schema.to_json())
  model.save(run, target.weights, model='logreg', num_features=fed.num_features, rounds=7)
  loaded = attacks.load_target(data=None, attack=attacks.AttackConfig(model_dir=run.path))
  assert loaded.fed.schema == fed.schema
  for a, b in zip(loaded.weights, target.weights, strict=True):
    np.testing.assert_array_equal(a, b)
  assert loaded.settings['client_lr'] == 0.3 and '7 rounds' in loaded.description
  # Weights of another model family: one error naming the file.
  model.save(run, [np.zeros((fed.num_features, 16)), np.zeros(16), np.zeros((16, 1)),
                   np.zeros(1)], model='mlp', num_features=fed.num_features)
  with pytest.raises(errors.InputError, match='model.npz: weights of shapes'):
    attacks.load_target(data=None, attack=attacks.AttackConfig(model_dir=run.path))
  # The report may not go into the run directory.
  with pytest.raises(errors.InputError, match='--output_dir=.*other than --model_dir'):
    attacks.run(data=None, aggregator=aggregation.AggregatorConfig(),
                attack=attacks.AttackConfig(model_dir=run.path), output_dir=run.path)


@pytest.mark.parametrize('attack,message', [
    (attacks.AttackConfig(model_dir='/nonexistent/run'), '--model_dir=/nonexistent/run: not a directory'),
    (attacks.AttackConfig(model_dir='x', model='mlp'), "--model='mlp': expected no value with --model_dir"),
    (attacks.AttackConfig(batch_sizes=(0, 2)), '--batch_sizes=0: expected an integer >= 1'),
    (attacks.AttackConfig(inversion_loss='l1'), "--inversion_loss='l1': expected one of l2, cosine"),
])
def test_bad_settings_are_one_error_and_nothing_written(tiny, tmp_path, attack, message):
  data, _, _ = tiny
  out = tmp_path / 'attack'
  with pytest.raises(errors.InputError, match=message):
    attacks.run(data=None if attack.model_dir else data, aggregator=aggregation.AggregatorConfig(),
                attack=attack, output_dir=str(out), log=lambda line: None)
  assert not os.path.exists(out)


def test_list_flags_are_integers():
  assert attacks.integers('local_steps', ['5', '1', '5']) == (1, 5)
  assert attacks.integers('local_steps', []) == ()
  with pytest.raises(errors.InputError, match="--batch_sizes='1,two': expected integers"):
    attacks.integers('batch_sizes', ['1', 'two'])

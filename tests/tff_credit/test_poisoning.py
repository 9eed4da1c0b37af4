"""tff_credit.poisoning: a simulated poisoning bank moves the plain mean by
exactly its factor, flips only its own labels, is refused when misnamed, and
leaves an unpoisoned run as it was."""

import dataclasses
import json
import re

import numpy as np
import pytest
import tensorflow as tf

from tests.tff_credit.helpers import ALGORITHM
from tests.tff_credit.helpers import data_config
from tests.tff_credit.helpers import train_config
from tff_common import aggregation
from tff_common import errors
from tff_credit import algorithms
from tff_credit import config
from tff_credit import evaluation
from tff_credit import federation
from tff_credit import model
from tff_credit import poisoning
from tff_credit import training

NUM_FEATURES = 3
SERVER_LR = 0.5  # not 1, so that the update is read back through the server's step


def _bank_datasets(count=3, seed=0):
  """Banks of 12, 20, 28 rows of a noisy linear problem, 2 batches of 8 or more."""
  rng = np.random.default_rng(seed)
  datasets, sizes = [], []
  for k in range(count):
    rows = 12 + 8 * k
    x = rng.normal(size=(rows, NUM_FEATURES)).astype(np.float32)
    y = (x @ [1.0, -1.0, 0.5] + rng.normal(size=rows) > 0).astype(np.float32)[:, None]
    datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
    sizes.append(rows)
  return datasets, np.array(sizes, np.float64)


def _weights(process, state):
  return [np.asarray(w, np.float64) for w in process.get_model_weights(state).trainable]


def _algorithm(**overrides):
  return config.AlgorithmConfig(**{**dict(client_lr=0.3, server_lr=SERVER_LR), **overrides})


@pytest.mark.parametrize('config_kwargs,message', [
    (dict(attack='scale'), "--attack='scale': expected no value without --attack_bank"),
    (dict(attack_scale=10.0), '--attack_scale=10.0: expected no value without --attack_bank'),
    (dict(attack_bank='bank_1'), '--attack=None: expected one of scale, sign_flip, label_flip'),
    (dict(attack_bank='bank_1', attack='poison'), "--attack='poison': expected one of scale"),
    (dict(attack_bank='bank_1', attack='scale', attack_scale=0.0),
     '--attack_scale=0.0: expected a finite number > 0'),
    (dict(attack_bank='bank_1', attack='sign_flip', attack_scale=-2.0),
     '--attack_scale=-2.0: expected a finite number > 0'),
    (dict(attack_bank='bank_1', attack='scale', attack_scale=float('inf')),
     '--attack_scale=inf: expected a finite number > 0'),
    (dict(attack_bank='bank_1', attack='label_flip', attack_scale=3.0),
     '--attack_scale=3.0: expected no value under --attack=label_flip'),
])
def test_bad_attack_settings_are_one_clear_error(config_kwargs, message):
  with pytest.raises(errors.InputError, match='^' + re.escape(message)):
    config.TrainConfig(**config_kwargs).check()


def test_factor_and_description_of_each_attack():
  def attack(**kwargs):
    return config.TrainConfig(attack_bank='bank_2', **kwargs)
  assert poisoning.factor(config.TrainConfig()) == 1.0
  assert poisoning.describe(config.TrainConfig()) is None
  assert poisoning.factor(attack(attack='scale')) == 100.0
  assert poisoning.describe(attack(attack='scale')) == 'bank_2 sent 100x-scaled updates'
  assert poisoning.factor(attack(attack='sign_flip')) == -1.0
  assert poisoning.describe(attack(attack='sign_flip')) == 'bank_2 sent sign-flipped updates'
  assert poisoning.factor(attack(attack='sign_flip', attack_scale=4.0)) == -4.0
  assert poisoning.describe(attack(attack='sign_flip', attack_scale=4.0)).endswith('scaled 4x')
  assert poisoning.factor(attack(attack='label_flip')) == 1.0  # data poisoning: sends honestly
  assert not poisoning.is_model_poisoning(attack(attack='label_flip'))


def test_an_unknown_bank_is_refused_naming_the_banks_before_anything_is_written(
    tff_context, loans_csv, tmp_path):
  del tff_context
  out = tmp_path / 'run'
  with pytest.raises(errors.InputError) as raised:
    training.train(data=data_config(loans_csv), algorithm=ALGORITHM,
                   train_config=dataclasses.replace(train_config(1), attack_bank='bank_9',
                                                    attack='scale'),
                   output_dir=str(out), log=lambda line: None)
  assert str(raised.value) == "--attack_bank='bank_9': expected one of bank_1, bank_2, bank_3"
  assert not out.exists()


def test_what_the_attacker_and_the_honest_banks_train_on(tff_context, loans_csv):
  """label_flip flips the attacker's labels only; scale gives the attacker its
  factor and every other bank 1; without an attack, plain datasets."""
  del tff_context
  fed = federation.build_federation(data_config(loans_csv))
  train = config.TrainConfig(seed=1, attack_bank='bank_2', attack='label_flip')
  data_fn = training.client_data_fn_for(fed, algorithm='fedsgd', train=train)
  honest_fn = training.client_data_fn_for(fed, algorithm='fedsgd', train=config.TrainConfig())
  for name, flipped, honest in zip(fed.bank_names, data_fn(fed.bank_names, 1),
                                   honest_fn(fed.bank_names, 1), strict=True):
    (x, y), = flipped.as_numpy_iterator()
    (hx, hy), = honest.as_numpy_iterator()
    np.testing.assert_array_equal(x, hx)
    expected = 1.0 - fed.train[name][1] if name == 'bank_2' else fed.train[name][1]
    np.testing.assert_array_equal(y[:, 0], expected)
    np.testing.assert_array_equal(hy[:, 0], fed.train[name][1])

  scaled = dataclasses.replace(train, attack='scale', attack_scale=7.0)
  data = training.client_data_fn_for(fed, algorithm='fedavg', train=scaled)(['bank_1', 'bank_2'], 1)
  assert [list(d['factor'].as_numpy_iterator()) for d in data] == [[1.0], [7.0]]
  labels = np.concatenate([b[1][:, 0] for b in data[1]['data'].as_numpy_iterator()])
  assert sorted(labels) == sorted(fed.train['bank_2'][1])  # honest labels, shuffled


@pytest.mark.parametrize('algorithm,weighting,factor', [('fedavg', 'examples', 100.0),
                                                         ('fedsgd', 'uniform', -1.0)])
def test_the_attackers_update_reaches_the_mean_times_its_factor(tff_context, algorithm,
                                                                weighting, factor):
  """One round of the plain mean with bank 2 poisoning: the new model is the
  hand-computed mean of the honest updates (each read back from a one-bank
  round of TFF's own process) with bank 2's multiplied by its factor; with
  every factor 1 the composed process computes TFF's own round exactly."""
  del tff_context
  model_fn = model.model_fn_for(model='logreg', num_features=NUM_FEATURES)
  cfg = _algorithm(algorithm=algorithm, weighting=weighting)
  datasets, sizes = _bank_datasets()
  if algorithm == 'fedsgd':
    datasets = [d.unbatch().batch(64) for d in datasets]  # one full batch per bank
  weights = sizes if weighting == 'examples' else np.ones_like(sizes)
  honest = algorithms.build_process(cfg, model_fn)
  state = honest.initialize()
  start = _weights(honest, state)
  # Each bank's update as the server receives it: w_new = w - server_lr * update.
  updates = [[(a - b) / SERVER_LR for a, b in zip(start, _weights(honest, honest.next(
      state, [d]).state))] for d in datasets]
  honest_round = _weights(honest, honest.next(state, datasets).state)

  poisoned = algorithms.build_process(cfg, model_fn, poisoned_updates=True)
  assert poisoned.next.type_signature.parameter[1].member.factor.element.dtype == np.float32
  pstate = poisoned.initialize()
  for bank_2 in (1.0, factor):
    factors = [1.0, bank_2, 1.0]
    result = _weights(poisoned, poisoned.next(pstate, [
        poisoning.client_data(d, f) for d, f in zip(datasets, factors)]).state)
    for i, (w, *per_bank) in enumerate(zip(start, *updates)):
      mean = sum(c * f * u for c, f, u in zip(weights, factors, per_bank)) / weights.sum()
      np.testing.assert_allclose(result[i], w - SERVER_LR * mean, rtol=1e-4, atol=1e-6)
    if bank_2 == 1.0:
      for a, b in zip(result, honest_round, strict=True):
        np.testing.assert_array_equal(a, b)
  # The attack moved the model away from the honest round.
  assert np.abs(result[0] - honest_round[0]).max() > 1e-3


def test_without_an_attack_the_process_takes_plain_datasets(tff_context):
  del tff_context
  model_fn = model.model_fn_for(model='logreg', num_features=NUM_FEATURES)
  process = algorithms.build_process(_algorithm(), model_fn)
  assert str(process.next.type_signature.parameter[1]) == '{<float32[?,3],float32[?,1]>*}@CLIENTS'


def test_a_poisoned_run_stays_poisoned_and_its_report_says_so(tff_context, loans_csv, tmp_path):
  del tff_context
  out = str(tmp_path / 'run')
  poisoned = dataclasses.replace(train_config(1), attack_bank='bank_1', attack='scale')
  common = dict(data=data_config(loans_csv), algorithm=ALGORITHM, output_dir=out,
                log=lambda line: None)
  training.train(train_config=poisoned, **common)
  with open(tmp_path / 'run' / 'config.json') as f:
    assert json.load(f)['train']['attack_bank'] == 'bank_1'
  # The same directory without the attack is another experiment: refused.
  with pytest.raises(errors.InputError, match='attack'):
    training.train(train_config=train_config(2), **common)
  summary = evaluation.evaluate(output_dir=out, log=lambda line: None)
  assert summary['setup']['attack'] == {
      'bank': 'bank_1', 'attack': 'scale', 'update_factor': 100.0,
      'description': 'bank_1 sent 100x-scaled updates'}
  report = (tmp_path / 'run' / 'report.md').read_text().splitlines()
  assert report[2].startswith('**Simulation: bank_1 sent 100x-scaled updates.**')


@pytest.mark.skipif('median' not in aggregation.NAMES, reason='no median aggregator')
def test_the_attacker_does_not_move_the_median(tff_context):
  """Three banks, bank 2 sending 100x its update: the coordinate-wise median
  stays between the two honest banks' updates; the plain mean does not."""
  del tff_context
  pytest.importorskip('tff_common.robust_aggregation')
  model_fn = model.model_fn_for(model='logreg', num_features=NUM_FEATURES)
  datasets, _ = _bank_datasets(count=3, seed=3)
  factors = [1.0, 100.0, 1.0]
  honest_updates = None
  for name in ('median', 'mean'):
    process = algorithms.build_process(_algorithm(aggregator=name), model_fn,
                                       poisoned_updates=True)
    state = process.initialize()
    start = _weights(process, state)
    if honest_updates is None:
      honest_updates = [[(a - b) / SERVER_LR for a, b in zip(start, _weights(
          process, process.next(state, [poisoning.client_data(d, 1.0)]).state))]
          for k, d in enumerate(datasets) if factors[k] == 1.0]
    new = _weights(process, process.next(state, [
        poisoning.client_data(d, f) for d, f in zip(datasets, factors)]).state)
    aggregate = [(a - b) / SERVER_LR for a, b in zip(start, new)]
    inside = all(np.all((g >= np.min(h, axis=0) - 1e-6) & (g <= np.max(h, axis=0) + 1e-6))
                 for g, h in zip(aggregate, map(np.stack, zip(*honest_updates))))
    assert inside == (name == 'median'), name

"""tff_credit.tensor_client_work: the FedAvg family on padded tensors, against the datasets path."""

import numpy as np
import pytest

from tests.tff_credit.helpers import data_config
from tff_common import errors
from tff_credit import algorithms
from tff_credit import config
from tff_credit import federation
from tff_credit import model
from tff_credit import tensor_client_work
from tff_credit import training

# Two local epochs of batch 32 over each bank's ~100 training rows: several
# batches, a partial last one, and batches straddling the epochs.
TRAIN = config.TrainConfig(batch_size=32, seed=1, local_epochs=2)


def _rounds(fed, algorithm, client_data, *, model_name, rounds=2):
  model_fn = model.model_fn_for(model=model_name, num_features=fed.num_features, seed=1,
                                l2=0.01)
  process = algorithms.build_process(algorithm, model_fn, client_data=client_data)
  data_fn = training.client_data_fn_for(fed, algorithm=algorithm.algorithm, train=TRAIN,
                                        client_data=client_data)
  state = process.initialize()
  for round_num in range(1, rounds + 1):
    output = process.next(state, data_fn(fed.bank_names, round_num))
    state = output.state
  return process.get_model_weights(state).trainable, output.metrics


@pytest.mark.parametrize('model_name,algorithm', [
    ('logreg', config.AlgorithmConfig(client_lr=0.2)),
    ('mlp', config.AlgorithmConfig(algorithm='fedadam', server_lr=0.05, weighting='uniform')),
    # mu = 0: FedProx's client work with no proximal term (TFF's has the other
    # sign: test_fedprox_pulls_towards_the_global_model).
    ('mlp', config.AlgorithmConfig(algorithm='fedprox', mu=0.0, client_lr=0.2)),
])
def test_tensors_train_as_datasets(tff_context, loans_csv, model_name, algorithm):
  del tff_context
  fed = federation.build_federation(data_config(loans_csv))
  on_datasets, metrics_datasets = _rounds(fed, algorithm, 'datasets', model_name=model_name)
  on_tensors, metrics_tensors = _rounds(fed, algorithm, 'tensors', model_name=model_name)
  for a, b in zip(on_datasets, on_tensors, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert np.max(np.abs(on_tensors[0])) > 1e-3  # it trained
  train_d = metrics_datasets['client_work']['train']
  train_t = metrics_tensors['client_work']['train']
  assert train_t['num_examples'] == train_d['num_examples'] == 2 * sum(
      len(y) for _, y in fed.train.values())
  assert train_t['loss'] == pytest.approx(train_d['loss'], abs=1e-6)
  assert train_t['auc'] == pytest.approx(train_d['auc'], abs=1e-6)


def test_fedprox_pulls_towards_the_global_model(tff_context):
  """One bank, two SGD steps from w0: the first is FedAvg's (w1, no proximal
  term at w0); the second adds lr * mu * (w1 - w0) to FedProx's step on
  tensors (the gradient of mu/2 ||w - w0||^2), and TFF's datasets FedProx
  subtracts it (TFF 0.87 adds mu (w0 - w) to the gradient)."""
  del tff_context
  import tensorflow as tf
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 3)).astype(np.float32)
  y = (rng.random(8) < 0.5).astype(np.float32)
  lr, mu = 0.5, 0.3
  model_fn = model.model_fn_for(model='logreg', num_features=3)

  processes = {}

  def trained(algorithm, client_data, steps):
    key = algorithm, client_data
    if key not in processes:
      processes[key] = algorithms.build_process(
          config.AlgorithmConfig(algorithm=algorithm, mu=mu, client_lr=lr), model_fn,
          client_data=client_data)
    process = processes[key]
    rows = x[:4 * steps], y[:4 * steps]
    if client_data == 'tensors':
      data = tensor_client_work.client_data(*rows, order=np.arange(4 * steps), batch_size=4)
    else:
      data = tf.data.Dataset.from_tensor_slices((rows[0], rows[1][:, None])).batch(4)
    state = process.next(process.initialize(), [data]).state
    return np.concatenate([np.ravel(w) for w in process.get_model_weights(state).trainable])

  w1 = trained('fedavg', 'tensors', 1)
  assert np.max(np.abs(w1)) > 1e-3  # w0 = 0
  for client_data, sign in (('tensors', 1.0), ('datasets', -1.0)):
    fedavg = trained('fedavg', client_data, 2)
    fedprox = trained('fedprox', client_data, 2)
    np.testing.assert_allclose(fedprox, fedavg - sign * lr * mu * w1, atol=1e-6)


def test_client_data_pads_the_last_batch_and_keeps_the_order():
  x = np.arange(10, dtype=np.float32).reshape(5, 2)
  y = np.array([0, 1, 0, 1, 1], np.float32)
  data = tensor_client_work.client_data(x, y, order=[4, 0, 2, 4, 1], batch_size=2)
  assert data['x'].shape == (3, 2, 2) and data['y'].shape == (3, 2, 1)
  np.testing.assert_array_equal(data['mask'], [[1, 1], [1, 1], [1, 0]])
  np.testing.assert_array_equal(data['x'][:, :, 0].ravel(), [8, 0, 4, 8, 2, 0])
  np.testing.assert_array_equal(data['y'].ravel(), [1, 0, 0, 1, 1, 0])


@pytest.mark.parametrize('train', [
    TRAIN, config.TrainConfig(batch_size=7, seed=0, attack_bank='bank_2', attack='label_flip')])
def test_row_order_is_the_datasets_order(tff_context, loans_csv, train):
  """The padded batches hold the rows of the datasets' batches, in order
  (also the labels a label-flipping bank trains on)."""
  del tff_context
  fed = federation.build_federation(data_config(loans_csv))
  on_datasets = training.client_data_fn_for(fed, algorithm='fedavg', train=train)
  on_tensors = training.client_data_fn_for(fed, algorithm='fedavg', train=train,
                                           client_data='tensors')
  (dataset,), (tensors,) = on_datasets(['bank_2'], 3), on_tensors(['bank_2'], 3)
  batches = list(dataset.as_numpy_iterator())
  assert len(batches) == len(tensors['x'])
  for (bx, by), tx, ty, mask in zip(batches, tensors['x'], tensors['y'], tensors['mask']):
    real = mask > 0
    np.testing.assert_array_equal(bx, tx[real])
    np.testing.assert_array_equal(by, ty[real])
  (other,) = on_tensors(['bank_2'], 4)
  assert not np.array_equal(other['x'], tensors['x'])


@pytest.mark.parametrize('overrides,train_overrides,named', [
    (dict(algorithm='fedsgd'), {}, '--algorithm=fedsgd'),
    (dict(algorithm='mime_lite'), {}, '--algorithm=mime_lite'),
    (dict(dp_noise_multiplier=1.0), {}, '--dp_level=record'),
    ({}, dict(attack_bank='bank_1', attack='scale'), '--attack=scale'),
])
def test_tensors_refuse_what_they_do_not_run(overrides, train_overrides, named):
  algorithm = config.AlgorithmConfig(client_data='tensors', **overrides)
  train = config.TrainConfig(**train_overrides)
  with pytest.raises(errors.InputError) as raised:
    config.check(config.DataConfig(), algorithm, train)
  message = str(raised.value)
  assert message.startswith("--client_data='tensors': expected datasets or auto") and named in message
  # auto falls back to datasets for them, and picks tensors otherwise.
  auto = config.AlgorithmConfig(**overrides)
  assert config.client_data_path(auto, train) == 'datasets'
  assert config.client_data_path(config.AlgorithmConfig(), config.TrainConfig()) == 'tensors'


def test_old_settings_mean_datasets():
  stored = config.settings(config.DataConfig(), config.AlgorithmConfig(), config.TrainConfig(),
                           data_sha256='x')
  del stored['algorithm']['client_data']
  assert config.from_settings(stored)[1].client_data == 'datasets'
  assert config.defaults()['algorithm']['client_data'] == 'datasets'
  with pytest.raises(errors.InputError, match="--client_data='parquet'"):
    config.AlgorithmConfig(client_data='parquet').check()


def test_evaluation_on_tensors_is_the_datasets_one(tff_context, loans_csv):
  del tff_context
  fed = federation.build_federation(data_config(loans_csv))
  model_fn = model.model_fn_for(model='mlp', num_features=fed.num_features, seed=3)
  process = algorithms.build_process(config.AlgorithmConfig(), model_fn)
  weights = process.get_model_weights(process.initialize())
  on_datasets = training.federated_evaluator(fed, model_fn)(weights)
  on_tensors = training.federated_evaluator(fed, model_fn, client_data='tensors')(weights)
  assert sorted(on_tensors) == ['test/auc', 'test/log_loss', 'val/auc', 'val/log_loss']
  assert 0.55 < on_datasets['test/auc'] or on_datasets['test/auc'] < 0.45  # not a constant score
  for key, value in on_datasets.items():
    assert on_tensors[key] == pytest.approx(value, abs=1e-6)

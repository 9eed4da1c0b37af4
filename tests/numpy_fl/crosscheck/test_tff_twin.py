"""numpy_fl against its TFF twin: the same rounds give the same weights (float32, max |dw| <= 1e-5)."""

import numpy as np
import pytest

from numpy_fl import synthetic
from numpy_fl.crosscheck import lockstep
from numpy_fl.crosscheck import tff_twin
from tff_credit import config as credit_config

TOLERANCE = 1e-5


def _banks(model_name):
  data, _ = synthetic.linear_problem(clients=3, features=4, min_examples=9, max_examples=30,
                                     seed=1)
  if model_name == 'logistic':
    data = {k: (x, (y > np.median(y)).astype(np.float32)) for k, (x, y) in data.items()}
  return data


def _max_diff_over_rounds(config, banks):
  clients, make_server, algorithm, initial = lockstep.build_numpy(config, banks)
  twin = tff_twin.twin_for(config, banks, initial)
  rows = lockstep.side_by_side(server=make_server(), clients=clients, algorithm=algorithm,
                               twin=twin, rounds=config.rounds, log=None)
  assert [r.round_num for r in rows] == list(range(config.rounds + 1))
  # Training moved the weights, so agreement is not just two idle copies.
  assert rows[-1].numpy_loss < 0.9 * rows[0].numpy_loss
  if config.algorithm == 'fedsgd':
    # TFF's own (Keras) loss of round r is measured on the weights after round r - 1.
    np.testing.assert_allclose([r.tff_reported_loss for r in rows[1:]],
                               [r.numpy_loss for r in rows[:-1]], rtol=1e-5)
  return max(r.max_abs_diff for r in rows)


@pytest.mark.parametrize('model_name,weighting', [
    ('logistic', 'uniform'),
    ('linear', 'num_examples'),
])
def test_fedsgd_matches_tff_build_fed_sgd(tff_context, model_name, weighting):
  del tff_context
  config = lockstep.Config(algorithm='fedsgd', model=model_name, weighting=weighting,
                           rounds=50, lr=0.1, server_momentum=0.5)
  assert _max_diff_over_rounds(config, _banks(model_name)) <= TOLERANCE


@pytest.mark.parametrize('model_name,weighting,batch_size,epochs', [
    ('logistic', 'num_examples', None, 2),   # full-batch local gradient steps
    ('linear', 'uniform', 4, 1),             # unshuffled minibatches, short last batch
])
def test_fedavg_matches_tff_fed_avg(tff_context, model_name, weighting, batch_size, epochs):
  del tff_context
  config = lockstep.Config(algorithm='fedavg', model=model_name, weighting=weighting,
                           rounds=20, lr=0.05, local_epochs=epochs, batch_size=batch_size)
  assert _max_diff_over_rounds(config, _banks(model_name)) <= TOLERANCE


def test_fedavg_matches_tff_with_the_credit_jobs_own_model(tff_context):
  """The credit job's scorecard (sigmoid output, default cross-entropy) trains identically."""
  del tff_context
  config = lockstep.Config(algorithm='fedavg', model='logistic', weighting='num_examples',
                           rounds=20, lr=0.1, batch_size=5, tff_model='credit')
  assert _max_diff_over_rounds(config, _banks('logistic')) <= TOLERANCE


def test_settings_map_onto_the_credit_jobs_algorithm_config():
  """FedSGD's lr is the server's; FedAvg's the clients'; num_examples is 'examples'."""
  assert tff_twin.algorithm_config(
      algorithm='fedsgd', weighting='num_examples', lr=0.3, server_lr=7.0,
      server_momentum=0.5) == credit_config.AlgorithmConfig(
          algorithm='fedsgd', weighting='examples', server_lr=0.3, server_momentum=0.5)
  assert tff_twin.algorithm_config(
      algorithm='fedavg', weighting='uniform', lr=0.05,
      server_lr=2.0) == credit_config.AlgorithmConfig(
          algorithm='fedavg', weighting='uniform', client_lr=0.05, server_lr=2.0,
          server_momentum=0.0)
  with pytest.raises(ValueError, match='unknown algorithm'):
    tff_twin.algorithm_config(algorithm='fedprox', weighting='uniform', lr=0.1)


def test_next_has_the_documented_federated_type(tff_context):
  del tff_context
  process = tff_twin.build_process(algorithm='fedavg', model='linear', num_features=3,
                                   weighting='uniform', lr=0.1)
  signature = str(process.next.type_signature)
  weights = '<global_model_weights=<trainable=<float32[3,1],float32[1]>,non_trainable=<>>'
  assert signature.startswith(f'(<state={weights},')
  assert '@SERVER,client_data={<float32[?,3],float32[?,1]>*}@CLIENTS> -> ' \
      f'<state={weights},' in signature
  assert ',metrics=<distributor=<>,client_work=<train=<loss=float32,' in signature
  assert signature.endswith('@SERVER>)')

"""tff_credit.algorithms: every algorithm builds; server momentum adds its accumulator."""

import pytest

from tff_credit import algorithms
from tff_credit import config
from tff_credit import model


@pytest.mark.parametrize('algorithm', config.ALGORITHMS)
def test_every_algorithm_builds_a_learning_process(tff_context, algorithm):
  del tff_context
  model_fn = model.model_fn_for(model='logreg', num_features=3)
  process = algorithms.build_process(config.AlgorithmConfig(algorithm=algorithm), model_fn)
  assert process.next.type_signature.parameter[0].placement.is_server()
  assert process.next.type_signature.parameter[1].placement.is_clients()


def test_server_momentum_keeps_an_accumulator(tff_context):
  del tff_context
  model_fn = model.model_fn_for(model='logreg', num_features=3)
  plain = algorithms.build_process(config.AlgorithmConfig(), model_fn).initialize()
  momentum = algorithms.build_process(config.AlgorithmConfig(server_momentum=0.9),
                                      model_fn).initialize()
  # The server optimizer (TFF's finalizer) keeps one accumulator per weight.
  assert 'accumulator' not in plain.finalizer
  assert [a.shape for a in momentum.finalizer['accumulator']] == [(3, 1), (1,)]
  assert momentum.finalizer['momentum'] == pytest.approx(0.9)


def test_unknown_algorithm_is_refused():
  with pytest.raises(ValueError, match='--algorithm must be one of'):
    algorithms.build_process(config.AlgorithmConfig(algorithm='fedsvrg'), lambda: None)


def test_mime_lite_trains_and_counts_both_messages(tff_context, loans_csv):
  del tff_context
  from tests.tff_credit.helpers import data_config
  from tff_credit import federation
  from tff_credit import training
  fed = federation.build_federation(data_config(loans_csv))
  settings = config.AlgorithmConfig(algorithm='mime_lite', client_lr=0.05)
  process = algorithms.build_process(
      settings, model.model_fn_for(model='logreg', num_features=fed.num_features))
  data_fn = training.client_data_fn_for(fed, algorithm='mime_lite',
                                        train=config.TrainConfig(batch_size=32, seed=1))
  state = process.initialize()
  # The base optimizer's state (momentum and its accumulator) lives in the server
  # state, in the client work's part: broadcast to the banks, updated on the server.
  assert state.client_work[0]['momentum'] == pytest.approx(algorithms.MIME_MOMENTUM)
  assert state.client_work[0]['learning_rate'] == pytest.approx(0.05)
  losses = []
  for round_num in range(1, 5):
    output = process.next(state, data_fn(fed.bank_names, round_num))
    state = output.state
    losses.append(float(output.metrics['client_work']['train']['loss']))
  assert losses[-1] < losses[0] - 0.02, losses
  # Down: the model and the momentum; up: the update and the full gradient, each weighted
  # or not (7 float32 weights: 6 features and a bias).
  weights = process.get_model_weights(state)
  assert algorithms.wire(settings).per_client(weights) == (2 * 28, 2 * (28 + 4))
  uniform = config.AlgorithmConfig(algorithm='mime_lite', weighting='uniform')
  assert algorithms.wire(uniform).per_client(weights) == (2 * 28, 2 * 28)
  # The uniform variant (TFF's unweighted builder) builds too.
  unweighted = algorithms.build_process(
      uniform, model.model_fn_for(model='logreg', num_features=fed.num_features))
  assert unweighted.next.type_signature.parameter[1].placement.is_clients()


def test_mime_lite_is_refused_with_dp_and_model_poisoning():
  from tff_common import errors
  with pytest.raises(errors.InputError, match="--algorithm='mime_lite': expected one of fedavg"):
    config.AlgorithmConfig(algorithm='mime_lite', dp_noise_multiplier=1.0,
                           dp_level='bank').check()
  with pytest.raises(errors.InputError, match="--attack='scale': expected label_flip"):
    config.check(config.DataConfig(), config.AlgorithmConfig(algorithm='mime_lite'),
                 config.TrainConfig(attack_bank='bank_1', attack='scale'))

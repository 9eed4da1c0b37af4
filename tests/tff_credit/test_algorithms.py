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

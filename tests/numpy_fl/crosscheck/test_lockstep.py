"""numpy_fl.crosscheck.lockstep: the NumPy side of a cross-check, built from its config."""

import numpy as np
import pytest

import numpy_fl
from numpy_fl import synthetic
from numpy_fl.crosscheck import lockstep
from tff_common.errors import InputError


def test_weightings_differ_on_unequal_clients():
  """So the uniform and example-weighted TFF equivalence tests pin down different things."""
  data, _ = synthetic.linear_problem(clients=3, features=4, min_examples=9, max_examples=30,
                                     seed=1)
  finals = []
  for weighting in ('uniform', 'num_examples'):
    config = lockstep.Config(algorithm='fedsgd', model='linear', weighting=weighting,
                             rounds=5, lr=0.1)
    clients, make_server, algorithm, _ = lockstep.build_numpy(config, data)
    server = make_server()
    numpy_fl.run_rounds(server, clients, algorithm, rounds=5)
    finals.append(server.weights)
  assert np.max(np.abs(finals[0] - finals[1])) > 1e-3


def test_config_defaults_resolve_by_algorithm_and_data_and_checks_name_the_flag():
  credit, synthetic_data = lockstep.DataConfig(), lockstep.DataConfig(data='synthetic')
  fedsgd = lockstep.Config().resolved(credit)
  assert (fedsgd.rounds, fedsgd.model, fedsgd.batch_size) == (50, 'logistic', None)
  fedavg = lockstep.Config(algorithm='fedavg', batch_size=0).resolved(synthetic_data)
  assert (fedavg.rounds, fedavg.model, fedavg.batch_size) == (20, 'linear', None)
  assert fedavg.resolved(synthetic_data) == fedavg
  lockstep.Config().check(credit)
  with pytest.raises(InputError, match=r'^--async_buffer=4: expected an integer in \[0, --banks=3\]$'):
    lockstep.Config(async_buffer=4).check(lockstep.DataConfig(banks=3))
  with pytest.raises(InputError, match="^--tff_model='credit': expected 'dense' with --model=linear"):
    lockstep.Config(tff_model='credit').check(synthetic_data)
  # 0 rounds is an error, not the default (it used to run the default rounds silently).
  with pytest.raises(InputError, match='^--rounds=0: expected an integer >= 1$'):
    lockstep.Config(rounds=0).check(credit)

"""numpy_fl.asynchronous: seeded delays, staleness weights, FedBuff vs the synchronous loop."""

import numpy as np
import pytest

import numpy_fl
from numpy_fl import asynchronous
from numpy_fl import models
from numpy_fl import synthetic
from tests.numpy_fl import problems


def test_delays_are_seeded_and_spread_zero_is_constant():
  d = asynchronous.Delays(distribution='lognormal', scale=2.0, spread=1.0, seed=3)
  assert d(1, 5) == d(1, 5)
  assert d(1, 5) != d(2, 5)
  assert asynchronous.Delays(spread=0.0, scale=2.0)(4, 9) == 2.0
  pareto = asynchronous.Delays(distribution='pareto', scale=1.5, spread=0.8, seed=0)
  draws = np.array([pareto(k, j) for k in range(20) for j in range(1, 20)])
  assert draws.min() >= 1.5
  assert np.max(draws) > 10 * np.median(draws)  # heavy tail: rare, very slow jobs


def test_staleness_weight():
  assert asynchronous.staleness_weight(0) == 1.0
  assert asynchronous.staleness_weight(3) == pytest.approx(0.5)
  assert asynchronous.staleness_weight(3, exponent=1.0) == pytest.approx(0.25)


@pytest.mark.parametrize('algorithm', [
    numpy_fl.FedSGD(),
    numpy_fl.FedAvg(client_lr=0.05, epochs=2, batch_size=4, shuffle_seed=11),
])
@pytest.mark.parametrize('weighting', ['uniform', 'num_examples'])
def test_async_with_equal_delays_and_full_buffer_is_the_synchronous_loop(algorithm, weighting):
  clients = problems.clients('linear', sizes=(12, 7, 20, 9))
  w0 = models.initial_weights(num_features=3, seed=6)
  delays = asynchronous.Delays(spread=0.0, scale=1.7)

  def make_server():
    return numpy_fl.Server(w0, lr=0.1, momentum=0.5, weighting=weighting)

  sync = asynchronous.run_sync(server=make_server(), clients=clients, algorithm=algorithm,
                               delays=delays, rounds=8)
  plain = make_server()
  for r in range(1, 9):
    numpy_fl.run_round(plain, clients, algorithm, round_num=r)
  fedbuff = asynchronous.run_async(server=make_server(), clients=clients, algorithm=algorithm,
                                   delays=delays, buffer_size=len(clients),
                                   max_time=sync.points[-1].time)
  np.testing.assert_array_equal(sync.weights, plain.weights)
  np.testing.assert_array_equal(fedbuff.weights, sync.weights)  # bit for bit
  assert [(p.time, p.server_steps, p.client_updates, p.loss) for p in fedbuff.points] == \
      [(p.time, p.server_steps, p.client_updates, p.loss) for p in sync.points]


def test_async_beats_sync_under_heavy_tailed_delays():
  data, _ = synthetic.linear_problem(clients=8, features=4, seed=2)
  model = models.LinearRegression()
  clients = [numpy_fl.Client(x, y, model=model) for x, y in data.values()]
  w0 = models.initial_weights(num_features=4)
  study = asynchronous.race_sync_async(
      make_server=lambda: numpy_fl.Server(w0, lr=0.05), clients=clients,
      algorithm=numpy_fl.FedSGD(),
      delays=asynchronous.Delays(distribution='pareto', spread=0.7, seed=1),
      buffer_size=3, rounds=40)
  summary = study.summary()
  assert summary['sync']['time_to_target'] is not None
  assert summary['async']['time_to_target'] is not None
  # Simulated clock, so this is deterministic: the async server never waits for stragglers.
  assert summary['async']['time_to_target'] < summary['sync']['time_to_target']
  # Stale, smaller buffers need more server steps than full synchronous rounds.
  assert summary['async']['server_steps_to_target'] >= summary['sync']['server_steps_to_target']


def test_async_rejects_a_buffer_larger_than_the_clients():
  clients = problems.clients(sizes=(5, 5))
  with pytest.raises(ValueError, match='buffer size'):
    asynchronous.run_async(server=numpy_fl.Server(np.zeros(4), lr=0.1), clients=clients,
                           algorithm=numpy_fl.FedSGD(), delays=asynchronous.Delays(),
                           buffer_size=3, max_time=10)

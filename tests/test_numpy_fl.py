"""numpy_fl without TensorFlow: gradients, server math, client work, async reduction."""

import subprocess
import sys

import numpy as np
import pytest

import numpy_fl
from numpy_fl import asynchronous
from numpy_fl import client as client_lib
from numpy_fl import comparison
from numpy_fl import models
from numpy_fl import server as server_lib
from numpy_fl import synthetic


def _problem(model_name, *, n=30, d=4, seed=0, dtype=np.float64):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  if model_name == 'linear':
    y = x @ rng.normal(size=d) + 0.3 + rng.normal(scale=0.1, size=n)
  else:
    y = (rng.random(n) < 0.4).astype(float)
  return x.astype(dtype), y.astype(dtype), rng.normal(size=d + 1).astype(dtype)


def _clients(model_name='linear', *, sizes=(12, 7, 20), d=3, seed=0):
  model = models.get_model(model_name)
  out = []
  for k, n in enumerate(sizes):
    x, y, _ = _problem(model_name, n=n, d=d, seed=seed + k, dtype=np.float32)
    out.append(numpy_fl.Client(x, y, model=model, name=f'c{k}'))
  return out


def test_importing_the_package_loads_no_tensorflow():
  code = ('import sys, numpy_fl, numpy_fl.models, numpy_fl.client, numpy_fl.server, '
          'numpy_fl.algorithms, numpy_fl.asynchronous, numpy_fl.synthetic, numpy_fl.comparison; '
          'bad = sorted(m for m in sys.modules if m.split(".")[0] in '
          '("tensorflow", "tensorflow_federated", "keras")); print(bad); sys.exit(1 if bad else 0)')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize('model_name', ['linear', 'logistic'])
def test_gradient_matches_central_finite_differences(model_name):
  model = models.get_model(model_name)
  x, y, w = _problem(model_name)
  grad = model.gradient(w, x, y)
  eps = 1e-6
  numeric = np.array([
      (model.loss(w + eps * e, x, y) - model.loss(w - eps * e, x, y)) / (2 * eps)
      for e in np.eye(len(w))])
  np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize('model_name', ['linear', 'logistic'])
def test_float32_keeps_its_dtype_and_agrees_with_float64(model_name):
  model = models.get_model(model_name)
  x, y, w = _problem(model_name)
  g64 = model.gradient(w, x, y)
  g32 = model.gradient(w.astype(np.float32), x.astype(np.float32), y.astype(np.float32))
  assert g32.dtype == np.float32
  np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


def test_logistic_loss_is_finite_for_huge_logits():
  model = models.LogisticRegression()
  x = np.array([[1000.0], [-1000.0]])
  y = np.array([0.0, 1.0])
  loss = model.loss(np.array([1.0, 0.0]), x, y)
  assert np.isfinite(loss) and loss == pytest.approx(1000.0)


def _update(values, n):
  return client_lib.ClientUpdate(np.asarray(values, dtype=np.float64), n)


def test_aggregate_uniform_and_example_weighted_by_hand():
  updates = [_update([1, 2], 1), _update([3, 4], 1), _update([5, 6], 2)]
  np.testing.assert_allclose(server_lib.aggregate(updates, weighting='uniform'), [3.0, 4.0])
  # (1*[1,2] + 1*[3,4] + 2*[5,6]) / 4
  np.testing.assert_allclose(server_lib.aggregate(updates, weighting='num_examples'), [3.5, 4.5])


def test_aggregate_scales_discount_without_renormalizing():
  updates = [_update([2, 0], 10), _update([0, 4], 30)]
  np.testing.assert_allclose(
      server_lib.aggregate(updates, weighting='uniform', scales=[1.0, 0.5]), [1.0, 1.0])
  # (10*[2,0] + 0.5*30*[0,4]) / 40
  np.testing.assert_allclose(
      server_lib.aggregate(updates, weighting='num_examples', scales=[1.0, 0.5]), [0.5, 1.5])


def test_aggregate_rejects_empty_and_unknown_weighting():
  with pytest.raises(ValueError, match='zero client updates'):
    server_lib.aggregate([], weighting='uniform')
  with pytest.raises(ValueError, match='unknown weighting'):
    server_lib.aggregate([_update([1], 1)], weighting='median')


def test_server_sgd_step_and_broadcast_copy():
  server = numpy_fl.Server(np.array([1.0, 1.0]), lr=0.5)
  sent = server.broadcast()
  sent[:] = 99  # a client scribbling on its copy must not reach the server
  server.step([_update([1, 2], 1), _update([3, 4], 1), _update([5, 6], 2)])
  np.testing.assert_allclose(server.weights, [1 - 0.5 * 3, 1 - 0.5 * 4])
  assert server.version == 1


def test_server_momentum_matches_tff_sgdm_by_hand():
  server = numpy_fl.Server(np.array([0.0]), lr=0.1, momentum=0.9)
  g = [_update([1.0], 1)]
  server.step(g)  # a = 1, w = -0.1
  server.step(g)  # a = 0.9 + 1 = 1.9, w = -0.1 - 0.19
  np.testing.assert_allclose(server.weights, [-0.29])


def test_fedsgd_round_is_the_seeds_formula():
  clients = _clients('logistic')
  w0 = models.initial_weights(num_features=3, seed=1)
  server = numpy_fl.Server(w0, lr=0.3)
  numpy_fl.run_round(server, clients, numpy_fl.FedSGD(), round_num=1)
  expected = w0 - 0.3 * np.mean([c.model.gradient(w0, c.x, c.y) for c in clients], axis=0)
  np.testing.assert_allclose(server.weights, expected, rtol=1e-6, atol=1e-7)


def test_weightings_differ_on_unequal_clients():
  """So the uniform and example-weighted TFF equivalence tests pin down different things."""
  data, _ = synthetic.linear_problem(clients=3, features=4, min_examples=9, max_examples=30,
                                     seed=1)
  finals = []
  for weighting in ('uniform', 'num_examples'):
    config = comparison.Config(algorithm='fedsgd', model='linear', weighting=weighting,
                               rounds=5, lr=0.1)
    clients, make_server, algorithm, _ = comparison.build_numpy(config, data)
    server = make_server()
    numpy_fl.run_rounds(server, clients, algorithm, rounds=5)
    finals.append(server.weights)
  assert np.max(np.abs(finals[0] - finals[1])) > 1e-3


def test_client_gradient_reports_its_example_count():
  c = _clients(sizes=(9,))[0]
  update = c.gradient(np.zeros(4, np.float32))
  assert update.num_examples == 9
  np.testing.assert_array_equal(update.update, c.model.gradient(np.zeros(4, np.float32), c.x, c.y))


def test_local_training_full_batch_is_gradient_steps():
  c = _clients(sizes=(15,))[0]
  w = models.initial_weights(num_features=3, seed=2)
  one = c.train(w, lr=0.1, epochs=1)
  np.testing.assert_allclose(one.update, 0.1 * c.model.gradient(w, c.x, c.y), rtol=1e-6)
  two = c.train(w, lr=0.1, epochs=2)
  w1 = w - 0.1 * c.model.gradient(w, c.x, c.y)
  w2 = w1 - 0.1 * c.model.gradient(w1, c.x, c.y)
  np.testing.assert_allclose(two.update, w - w2, rtol=1e-5, atol=1e-7)
  assert (one.num_examples, two.num_examples) == (15, 30)


def test_local_training_minibatches_in_stored_order_with_short_last_batch():
  c = _clients(sizes=(10,))[0]
  w = models.initial_weights(num_features=3, seed=3)
  got = c.train(w, lr=0.05, batch_size=4)
  expected = w.copy()
  for rows in (slice(0, 4), slice(4, 8), slice(8, 10)):
    expected = expected - 0.05 * c.model.gradient(expected, c.x[rows], c.y[rows])
  np.testing.assert_allclose(got.update, w - expected, rtol=1e-6, atol=1e-7)


def test_shuffling_is_deterministic_in_its_seed():
  c = _clients(sizes=(17,))[0]
  w = models.initial_weights(num_features=3, seed=4)
  a = c.train(w, lr=0.1, batch_size=3, epochs=2, shuffle_seed=np.random.SeedSequence([7, 0]))
  b = c.train(w, lr=0.1, batch_size=3, epochs=2, shuffle_seed=np.random.SeedSequence([7, 0]))
  other = c.train(w, lr=0.1, batch_size=3, epochs=2, shuffle_seed=np.random.SeedSequence([8, 0]))
  unshuffled = c.train(w, lr=0.1, batch_size=3, epochs=2)
  np.testing.assert_array_equal(a.update, b.update)
  assert not np.array_equal(a.update, other.update)
  assert not np.array_equal(a.update, unshuffled.update)


def test_client_rejects_malformed_data():
  model = models.LinearRegression()
  with pytest.raises(ValueError, match='2-D'):
    numpy_fl.Client(np.zeros(5), np.zeros(5), model=model)
  with pytest.raises(ValueError, match='one per example'):
    numpy_fl.Client(np.zeros((5, 2)), np.zeros(4), model=model)
  with pytest.raises(ValueError, match='finite'):
    numpy_fl.Client(np.array([[np.nan]]), np.zeros(1), model=model)


def test_fedsgd_recovers_the_synthetic_ground_truth():
  data, truth = synthetic.linear_problem(clients=4, features=3, noise=0.01, seed=5)
  model = models.LinearRegression()
  clients = [numpy_fl.Client(x, y, model=model) for x, y in data.values()]
  server = numpy_fl.Server(models.initial_weights(num_features=3), lr=0.1,
                           weighting='num_examples')
  history = numpy_fl.run_rounds(server, clients, numpy_fl.FedSGD(), rounds=300)
  assert history[-1].loss < 1e-3 < history[0].loss
  np.testing.assert_allclose(server.weights, truth, atol=0.01)


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
  clients = _clients('linear', sizes=(12, 7, 20, 9))
  w0 = models.initial_weights(num_features=3, seed=6)
  delays = asynchronous.Delays(spread=0.0, scale=1.7)
  make_server = lambda: numpy_fl.Server(w0, lr=0.1, momentum=0.5, weighting=weighting)
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
  study = asynchronous.compare(
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
  clients = _clients(sizes=(5, 5))
  with pytest.raises(ValueError, match='buffer size'):
    asynchronous.run_async(server=numpy_fl.Server(np.zeros(4), lr=0.1), clients=clients,
                           algorithm=numpy_fl.FedSGD(), delays=asynchronous.Delays(),
                           buffer_size=3, max_time=10)

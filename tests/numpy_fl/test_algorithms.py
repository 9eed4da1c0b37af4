"""numpy_fl.algorithms: a FedSGD round is the textbook formula; the synchronous loop converges."""

import numpy as np

import numpy_fl
from numpy_fl import models
from numpy_fl import synthetic
from tests.numpy_fl import problems


def test_fedsgd_round_is_the_textbook_formula():
  """w <- w - lr * (1/K) * sum_k grad F_k(w)."""
  clients = problems.clients('logistic')
  w0 = models.initial_weights(num_features=3, seed=1)
  server = numpy_fl.Server(w0, lr=0.3)
  numpy_fl.run_round(server, clients, numpy_fl.FedSGD(), round_num=1)
  expected = w0 - 0.3 * np.mean([c.model.gradient(w0, c.x, c.y) for c in clients], axis=0)
  np.testing.assert_allclose(server.weights, expected, rtol=1e-6, atol=1e-7)


def test_fedsgd_recovers_the_synthetic_ground_truth():
  data, truth = synthetic.linear_problem(clients=4, features=3, noise=0.01, seed=5)
  model = models.LinearRegression()
  clients = [numpy_fl.Client(x, y, model=model) for x, y in data.values()]
  server = numpy_fl.Server(models.initial_weights(num_features=3), lr=0.1,
                           weighting='num_examples')
  history = numpy_fl.run_rounds(server, clients, numpy_fl.FedSGD(), rounds=300)
  assert history[-1].loss < 1e-3 < history[0].loss
  np.testing.assert_allclose(server.weights, truth, atol=0.01)

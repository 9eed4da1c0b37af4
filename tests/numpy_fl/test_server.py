"""numpy_fl.server: the uniform and example-weighted means by hand, server SGD and SGDM."""

import numpy as np
import pytest

import numpy_fl
from numpy_fl import client as client_lib
from numpy_fl import server as server_lib


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

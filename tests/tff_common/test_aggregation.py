"""tff_common.aggregation: the factories both jobs get, checked on hand-computed means."""

import numpy as np
import pytest

from tff_common import aggregation


def _run(factory, values, weights=None):
  import tensorflow_federated as tff
  value_type = tff.TensorType(np.float32, [2])
  if weights is None:
    process = factory.create(value_type)
    return process.next(process.initialize(), values).result
  process = factory.create(value_type, tff.TensorType(np.float32))
  return process.next(process.initialize(), values, weights).result


VALUES = [np.array([1.0, 2.0], np.float32), np.array([3.0, 6.0], np.float32)]
WEIGHTS = [np.float32(1.0), np.float32(3.0)]


def test_weighted_mean(tff_context):
  del tff_context
  factory = aggregation.build_aggregator('mean', weighted=True)
  np.testing.assert_allclose(_run(factory, VALUES, WEIGHTS), [2.5, 5.0], rtol=1e-6)


def test_unweighted_mean(tff_context):
  del tff_context
  factory = aggregation.build_aggregator('mean', weighted=False)
  np.testing.assert_allclose(_run(factory, VALUES), [2.0, 4.0], rtol=1e-6)


def test_uniform_mean_behind_the_weighted_api_ignores_weights(tff_context):
  del tff_context
  factory = aggregation.build_aggregator('mean', weighted=False, ignore_weights=True)
  np.testing.assert_allclose(_run(factory, VALUES, WEIGHTS), [2.0, 4.0], rtol=1e-6)


def test_bad_requests_are_refused():
  with pytest.raises(ValueError, match='unknown aggregator'):
    aggregation.build_aggregator('median', weighted=True)
  with pytest.raises(ValueError, match='ignore_weights'):
    aggregation.build_aggregator('mean', weighted=True, ignore_weights=True)

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
  factory = aggregation.build_aggregator(aggregation.AggregatorConfig(), weighted=True)
  np.testing.assert_allclose(_run(factory, VALUES, WEIGHTS), [2.5, 5.0], rtol=1e-6)


def test_unweighted_mean(tff_context):
  del tff_context
  factory = aggregation.build_aggregator(aggregation.AggregatorConfig(), weighted=False)
  np.testing.assert_allclose(_run(factory, VALUES), [2.0, 4.0], rtol=1e-6)


def test_uniform_mean_behind_the_weighted_api_ignores_weights(tff_context):
  del tff_context
  factory = aggregation.build_aggregator(aggregation.AggregatorConfig(), weighted=False,
                                         ignore_weights=True)
  np.testing.assert_allclose(_run(factory, VALUES, WEIGHTS), [2.0, 4.0], rtol=1e-6)


def test_bad_requests_are_refused():
  from tff_common import errors
  with pytest.raises(errors.InputError, match="--aggregator='krum': expected one of mean"):
    aggregation.build_aggregator(aggregation.AggregatorConfig('krum'), weighted=True)
  with pytest.raises(errors.InputError, match='--trim_fraction=0.5'):
    aggregation.AggregatorConfig('trimmed_mean', trim_fraction=0.5).check()
  with pytest.raises(errors.InputError, match='--quantization_bits=17'):
    aggregation.AggregatorConfig('compressed', quantization_bits=17).check()
  with pytest.raises(ValueError, match='ignore_weights'):
    aggregation.build_aggregator(aggregation.AggregatorConfig(), weighted=True, ignore_weights=True)


def test_a_compressed_mean_is_the_mean_within_its_quantization_step(tff_context):
  del tff_context
  rng = np.random.default_rng(0)
  values = [rng.normal(size=64).astype(np.float32) for _ in range(3)]
  weights = [np.float32(w) for w in (1.0, 2.0, 5.0)]
  exact = sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)
  import tensorflow_federated as tff
  value_type = tff.TensorType(np.float32, [64])
  for bits, tolerance in ((16, 1e-3), (8, 0.1), (2, 2.0)):
    factory = aggregation.build_aggregator(
        aggregation.AggregatorConfig('compressed', quantization_bits=bits), weighted=True)
    process = factory.create(value_type, tff.TensorType(np.float32))
    result = process.next(process.initialize(), values, weights).result
    # Each client's weighted value is quantized to 2**bits levels of its range.
    error = np.max(np.abs(result - exact))
    assert error < tolerance, (bits, error)
    if bits == 16:
      assert error > 0  # it did quantize


def test_update_bytes_by_hand():
  shapes = [(29, 1), (1,)]  # the credit scorecard: 29 features and a bias
  mean = aggregation.AggregatorConfig()
  assert aggregation.update_bytes(mean, shapes, weighted=True) == 4 * 29 + 4 + 4
  assert aggregation.update_bytes(mean, shapes, weighted=False) == 4 * 30
  # 8 bits: 29 values pack into ceil(232 / 32) = 8 words (32 bytes), plus min and max
  # (8 bytes); the bias (1 value, under the threshold of 16) goes as float32; the weight too.
  eight = aggregation.AggregatorConfig('compressed', quantization_bits=8)
  assert aggregation.update_bytes(eight, shapes, weighted=True) == 32 + 8 + 4 + 4
  one = aggregation.AggregatorConfig('compressed', quantization_bits=1, compression_threshold=0)
  assert aggregation.update_bytes(one, shapes, weighted=False) == (4 + 8) + (4 + 8)

  # Secure aggregation quantizes floats to 32-bit integers: as many bytes as float32.
  secure = aggregation.AggregatorConfig('secure')
  assert aggregation.update_bytes(secure, shapes, weighted=True) == 4 * 29 + 4 + 4


def _clipped(value, norm):
  return value * min(1.0, norm / np.linalg.norm(value))


@pytest.mark.parametrize('name', ['secure', 'robust'])
def test_secure_and_robust_are_the_mean_of_updates_clipped_to_the_norm_bound(tff_context, name):
  del tff_context
  # In the first round both clip every update to TFF's initial L2 bound, 1.0
  # (the bound then adapts to the 0.8 quantile of the norms it sees).
  clipped = [_clipped(v, 1.0) for v in VALUES]
  expected_weighted = (WEIGHTS[0] * clipped[0] + WEIGHTS[1] * clipped[1]) / sum(WEIGHTS)
  config = aggregation.AggregatorConfig(name)
  weighted = aggregation.build_aggregator(config, weighted=True)
  # Secure sums quantize each value to 32 bits of its range: about 1e-6 here.
  np.testing.assert_allclose(_run(weighted, VALUES, WEIGHTS), expected_weighted, atol=1e-5)
  unweighted = aggregation.build_aggregator(config, weighted=False)
  np.testing.assert_allclose(_run(unweighted, VALUES), (clipped[0] + clipped[1]) / 2, atol=1e-5)
  uniform = aggregation.build_aggregator(config, weighted=False, ignore_weights=True)
  np.testing.assert_allclose(_run(uniform, VALUES, WEIGHTS), (clipped[0] + clipped[1]) / 2,
                             atol=1e-5)


def test_the_server_sees_individual_updates_except_under_secure_aggregation():
  for name in aggregation.NAMES:
    sees = aggregation.server_sees_individual_updates(aggregation.AggregatorConfig(name))
    assert sees == (name != 'secure'), name


def test_metrics_are_secure_summed_under_secure_aggregation_only():
  import tensorflow_federated as tff
  assert (aggregation.metrics_aggregator(aggregation.AggregatorConfig('secure'))
          is tff.learning.metrics.secure_sum_then_finalize)
  assert aggregation.metrics_aggregator(aggregation.MEAN) is tff.learning.metrics.sum_then_finalize


def test_filtered_mean_drops_an_update_pointing_away_and_weights_the_rest(tff_context):
  del tff_context
  config = aggregation.AggregatorConfig('filtered_mean', norm_multiplier=float('inf'))
  values = VALUES + [np.array([-30.0, -60.0], np.float32)]  # a sign-flipped, boosted client
  weights = WEIGHTS + [np.float32(100.0)]
  weighted = aggregation.build_aggregator(config, weighted=True)
  np.testing.assert_allclose(_run(weighted, values, weights), [2.5, 5.0], rtol=1e-6)
  unweighted = aggregation.build_aggregator(config, weighted=False)
  np.testing.assert_allclose(_run(unweighted, values), [2.0, 4.0], rtol=1e-6)

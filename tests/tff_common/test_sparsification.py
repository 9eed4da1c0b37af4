"""tff_common.sparsification: top-k and random-k sums under TFF, on hand-computed values."""

import collections

import numpy as np
import pytest
import tensorflow_federated as tff
import tensorflow_privacy as tfp

from tff_common import dp
from tff_common import errors
from tff_common import sparsification

# An update of two tensors with different shapes: a 2x3 kernel and a bias of 5.
UPDATE_TYPE = tff.types.StructWithPythonType(
    [tff.TensorType(np.float32, [2, 3]), tff.TensorType(np.float32, [5])], list)
# With fraction 0.4: k = ceil(2.4) = 3 of the kernel's 6 values, ceil(2.0) = 2 of the bias's 5.
FRACTION = 0.4


def _update(kernel, bias):
  return [np.array(kernel, np.float32).reshape(2, 3), np.array(bias, np.float32)]


def _run(factory, values, value_type=UPDATE_TYPE, state=None):
  process = factory.create(value_type)
  return process.next(process.initialize() if state is None else state, values)


def _assert_update(result, kernel, bias):
  assert isinstance(result, list) and len(result) == 2
  np.testing.assert_allclose(result[0], np.reshape(kernel, (2, 3)), rtol=1e-6)
  np.testing.assert_allclose(result[1], bias, rtol=1e-6)


def test_message_bytes_by_hand():
  topk = dict(method='topk', fraction=0.1, threshold=16)
  # k = 10 of 100: 40 bytes of values; indices 40 bytes or a 13-byte bitmap.
  assert sparsification.message(100, **topk) == sparsification.Message(10, 40 + 13)
  # Random-k sends its 8-byte seed instead.
  assert sparsification.message(100, **{**topk, 'method': 'randk'}) == (
      sparsification.Message(10, 40 + 8))
  # 1/32 or less: int32 indices beat the bitmap (k = 2 of 1000: 8 < 125 bytes).
  assert sparsification.message(1000, **{**topk, 'fraction': 0.002}) == (
      sparsification.Message(2, 8 + 8))
  # 0.1 * 30 is 3.0000000000000004 in binary: still k = 3.
  assert sparsification.message(30, **topk).kept == 3
  # At most `threshold` values, or no saving (fraction 1; k = 1 of 1), sent dense.
  assert sparsification.message(16, **topk) == sparsification.Message(16, 64)
  assert sparsification.message(100, **{**topk, 'fraction': 1.0}) == sparsification.Message(100, 400)
  assert sparsification.message(1, **{**topk, 'threshold': 0}) == sparsification.Message(1, 4)
  assert sparsification.message(100, **topk, itemsize=8) == sparsification.Message(10, 80 + 13)


def test_the_processes_have_the_aggregator_types(tff_context):
  del tff_context
  for factory, state in ((sparsification.TopKSumFactory(fraction=0.5, threshold=0), '<>'),
                         (sparsification.RandomKSumFactory(fraction=0.5, threshold=0), 'int64[2]')):
    assert isinstance(factory, tff.aggregators.UnweightedAggregationFactory)
    process = factory.create(UPDATE_TYPE)
    parameter, result = process.next.type_signature.parameter, process.next.type_signature.result
    assert str(parameter[0]) == f'{state}@SERVER' and str(result.state) == f'{state}@SERVER'
    assert parameter[1].placement == tff.CLIENTS and parameter[1].member.is_identical_to(UPDATE_TYPE)
    assert result.result.placement == tff.SERVER and result.result.member.is_identical_to(UPDATE_TYPE)
    assert str(result.measurements) == '<kept_fraction=float32>@SERVER'


def test_top_k_keeps_exactly_the_k_largest_magnitudes(tff_context):
  del tff_context
  factory = sparsification.TopKSumFactory(fraction=FRACTION, threshold=0)
  first = _update([1, -9, 3, 7, -2, 0.5], [0.1, -4, 2, 4, 0])  # a tie of |4|: the lower index
  second = _update([6, 1, -1, 1, 8, -7], [3, 0, 0, 0, -1])
  out = _run(factory, [first])
  _assert_update(out.result, [0, -9, 3, 7, 0, 0], [0, -4, 0, 4, 0])
  # The sum of the two clients' top-k values (the second keeps 8, -7, 6 and 3, -1).
  out = _run(factory, [first, second])
  _assert_update(out.result, [6, -9, 3, 7, 8, -7], [3, -4, 0, 4, -1])
  assert out.measurements == collections.OrderedDict(kept_fraction=np.float32(5 / 11))


def test_top_k_tie_goes_to_the_lower_index(tff_context):
  del tff_context
  out = _run(sparsification.TopKSumFactory(fraction=FRACTION, threshold=0),
             [_update([1, 1, 1, 1, 1, 1], [2, -2, 2, -2, 2])])
  _assert_update(out.result, [1, 1, 1, 0, 0, 0], [2, -2, 0, 0, 0])


def test_the_threshold_leaves_small_tensors_dense(tff_context):
  del tff_context
  value = _update([1, -9, 3, 7, -2, 0.5], [0.1, -4, 2, 4, 0])
  # Threshold 5: the bias (5 values) goes dense, the kernel (6) is sparsified.
  out = _run(sparsification.TopKSumFactory(fraction=FRACTION, threshold=5), [value])
  _assert_update(out.result, [0, -9, 3, 7, 0, 0], value[1])
  assert out.measurements['kept_fraction'] == np.float32(8 / 11)
  # Random-k does not rescale a dense tensor.
  out = _run(sparsification.RandomKSumFactory(fraction=FRACTION, threshold=6), [value])
  _assert_update(out.result, value[0], value[1])
  assert out.measurements['kept_fraction'] == np.float32(1.0)


def test_random_k_keeps_k_per_tensor_rescaled_and_is_reproducible(tff_context):
  del tff_context
  value = _update([1, -9, 3, 7, -2, 0.5], [0.1, -4, 2, 4, 1])
  factory = sparsification.RandomKSumFactory(fraction=FRACTION, threshold=0, seed=7)
  process = factory.create(UPDATE_TYPE)
  state = process.initialize()
  np.testing.assert_array_equal(state, [7, 0])
  masks = []
  for round_number in range(4):
    out = process.next(state, [value])
    state = out.state
    np.testing.assert_array_equal(state, [7, round_number + 1])
    for sent, full, kept in zip(out.result, value, (3, 2), strict=True):
      mask = sent != 0
      assert mask.sum() == kept
      # The kept values, times n / k; zeros elsewhere.
      np.testing.assert_allclose(sent[mask], full[mask] * full.size / kept, rtol=1e-6)
    masks.append(tuple(np.concatenate([(t != 0).ravel() for t in out.result])))
  assert len(set(masks)) > 1  # the round changes the coordinates
  # Bit-reproducible: the same state and value give the same message.
  again = factory.create(UPDATE_TYPE)
  first = again.next(again.initialize(), [value])
  assert masks[0] == tuple(np.concatenate([(t != 0).ravel() for t in first.result]))
  # Another run seed draws other coordinates (for this seed and value).
  other = _run(sparsification.RandomKSumFactory(fraction=FRACTION, threshold=0, seed=8), [value])
  assert masks[0] != tuple(np.concatenate([(t != 0).ravel() for t in other.result]))


def test_random_k_is_unbiased(tff_context):
  del tff_context
  # 2000 distinct clients (distinct values, so independent coordinates) in one
  # round; each keeps 1 of 5 bias values (fraction 0.2), times 5.
  clients = 2000
  rng = np.random.default_rng(0)
  base = np.array([1.0, -2.0, 0.5, 3.0, -1.0], np.float32)
  values = [base + rng.normal(0, 0.1, 5).astype(np.float32) for _ in range(clients)]
  out = _run(sparsification.RandomKSumFactory(fraction=0.2, threshold=0, seed=1), values,
             value_type=tff.TensorType(np.float32, [5]))
  true_mean = np.mean(values, axis=0)
  estimate = out.result / clients
  # Per coordinate, one client's variance is x^2 (n / k - 1) = 4 x^2.
  stderr = np.sqrt(4 * np.mean(np.square(values), axis=0) / clients)
  assert np.all(np.abs(estimate - true_mean) < 4 * stderr), (estimate, true_mean, stderr)
  # And it is not the plain mask (biased by k / n = 0.2).
  assert np.all(np.abs(estimate - 0.2 * true_mean) > 10 * stderr)


def test_a_non_finite_tensor_is_sent_dense(tff_context):
  del tff_context
  value = _update([1, -9, np.nan, 7, -2, 0.5], [0.1, -4, 2, 4, np.inf])
  for factory in (sparsification.TopKSumFactory(fraction=FRACTION, threshold=0),
                  sparsification.RandomKSumFactory(fraction=FRACTION, threshold=0)):
    out = _run(factory, [value])
    np.testing.assert_array_equal(out.result[0], value[0])
    np.testing.assert_array_equal(out.result[1], value[1])


def test_as_the_sum_of_a_weighted_mean(tff_context):
  del tff_context
  factory = tff.aggregators.MeanFactory(
      value_sum_factory=sparsification.TopKSumFactory(fraction=FRACTION, threshold=0))
  process = factory.create(UPDATE_TYPE, tff.TensorType(np.float32))
  first = _update([1, -9, 3, 7, -2, 0.5], [0.1, -4, 2, 5, 0])
  second = _update([6, 1, -1, 1, 8, -7], [3, 0, 0, 0, -1])
  out = process.next(process.initialize(), [first, second], [np.float32(1), np.float32(3)])
  # (1 * topk(first) + 3 * topk(second)) / 4: the weight does not change which values are largest.
  _assert_update(out.result, np.array([18, -9, 3, 7, 24, -21]) / 4, np.array([9, -4, 0, 5, -3]) / 4)
  assert out.measurements['mean_value']['kept_fraction'] == np.float32(5 / 11)


def _dp_mean(record_factory, clip):
  query = tfp.NormalizedQuery(
      dp.seeded_gaussian_sum_query(l2_norm_clip=clip, stddev=0.0, seed=0), denominator=1.0)
  return tff.aggregators.DifferentiallyPrivateFactory(
      query, record_aggregation_factory=record_factory).create(UPDATE_TYPE)


def test_with_differential_privacy_top_k_keeps_the_record_within_the_clip(tff_context):
  del tff_context
  clip = 1.0
  value = _update([1, -9, 3, 7, -2, 0.5], [0.1, -4, 2, 4, 1])
  norm = np.sqrt(sum(np.sum(np.square(t)) for t in value))
  process = _dp_mean(sparsification.TopKSumFactory(fraction=FRACTION, threshold=0), clip)
  out = process.next(process.initialize(), [value])  # one client: its record, without noise
  # Clipped first (on the client), then the clipped record's top-k.
  _assert_update(out.result, np.array([0, -9, 3, 7, 0, 0]) / norm, np.array([0, -4, 0, 4, 0]) / norm)
  assert np.sqrt(sum(np.sum(np.square(t)) for t in out.result)) <= clip
  # Random-k's n / k rescaling breaks the clip bound; the plain mask keeps it.
  rescaled = _dp_mean(sparsification.RandomKSumFactory(fraction=FRACTION, threshold=0), clip)
  masked = _dp_mean(sparsification.RandomKSumFactory(fraction=FRACTION, threshold=0,
                                                     rescale=False), clip)
  rescaled_state, masked_state, norms = rescaled.initialize(), masked.initialize(), []
  for _ in range(5):  # a few rounds: the kept coordinates differ
    out = rescaled.next(rescaled_state, [value])
    rescaled_state = out.state
    norms.append(np.sqrt(sum(np.sum(np.square(t)) for t in out.result)))
    out = masked.next(masked_state, [value])
    masked_state = out.state
    assert np.sqrt(sum(np.sum(np.square(t)) for t in out.result)) <= clip * (1 + 1e-6)
  assert max(norms) > clip, norms


def test_bad_arguments_are_refused():
  with pytest.raises(errors.InputError, match='--keep_fraction=0: expected a number in'):
    sparsification.TopKSumFactory(fraction=0, threshold=0)
  with pytest.raises(errors.InputError, match='--keep_fraction=1.5'):
    sparsification.RandomKSumFactory(fraction=1.5, threshold=0)
  with pytest.raises(errors.InputError, match='--compression_threshold=-1'):
    sparsification.TopKSumFactory(fraction=0.5, threshold=-1)
  with pytest.raises(errors.InputError, match='--seed=0.5'):
    sparsification.RandomKSumFactory(fraction=0.5, threshold=0, seed=0.5)
  with pytest.raises(TypeError, match='float'):
    sparsification.TopKSumFactory(fraction=0.5, threshold=0).create(tff.TensorType(np.int32, [3]))
  with pytest.raises(TypeError, match='fully defined'):
    sparsification.TopKSumFactory(fraction=0.5, threshold=0).create(
        tff.TensorType(np.float32, [None]))

"""tff_common.robust_aggregation: median and trimmed mean under TFF, on hand-computed values."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tests.tff_common import helpers
from tff_common import errors
from tff_common import robust_aggregation

# A model update of two tensors with different shapes: a 2x2 kernel and a bias of 3.
UPDATE_TYPE = tff.types.StructWithPythonType(
    [tff.TensorType(np.float32, [2, 2]), tff.TensorType(np.float32, [3])], list)


def _update(kernel, bias):
  return [np.array(kernel, np.float32).reshape(2, 2), np.array(bias, np.float32)]


# Per coordinate, the values are deliberately not in client order, so that a
# wrong axis or a missing sort shows.
CLIENTS = [
    _update([1, 40, 7, -1], [0, 5, 2]),
    _update([3, 10, 5, -3], [9, 1, 2]),
    _update([2, 20, 9, -2], [4, 3, 2]),
    _update([8, 30, 6, -4], [1, 7, 2]),
    _update([0, 50, 8, -5], [6, 2, 2]),
]


def _run(factory, values, value_type=UPDATE_TYPE):
  process = factory.create(value_type)
  return process.next(process.initialize(), values)


def _assert_update(result, kernel, bias):
  assert isinstance(result, list) and len(result) == 2
  np.testing.assert_allclose(result[0], np.reshape(kernel, (2, 2)), rtol=1e-6)
  np.testing.assert_allclose(result[1], bias, rtol=1e-6)


def test_the_processes_have_the_aggregator_type(tff_context):
  del tff_context
  for factory in (robust_aggregation.MedianFactory(),
                  robust_aggregation.TrimmedMeanFactory(trim_fraction=0.1)):
    assert isinstance(factory, tff.aggregators.UnweightedAggregationFactory)
    process = factory.create(UPDATE_TYPE)
    assert isinstance(process, tff.templates.AggregationProcess)
    value, result = process.next.type_signature.parameter[1], process.next.type_signature.result
    assert value.placement == tff.CLIENTS and value.member.is_identical_to(UPDATE_TYPE)
    assert result.result.placement == tff.SERVER
    assert result.result.member.is_identical_to(UPDATE_TYPE)
    assert result.measurements.placement == tff.SERVER


def test_median_of_odd_and_even_numbers_of_clients(tff_context):
  del tff_context
  median = robust_aggregation.MedianFactory()
  odd = _run(median, CLIENTS[:3])   # sorted kernel columns: 1,2,3 / 10,20,40 / 5,7,9 / -3,-2,-1
  _assert_update(odd.result, [2, 20, 7, -2], [4, 3, 2])
  assert odd.measurements == collections.OrderedDict(num_clients=3)
  even = _run(median, CLIENTS[:4])  # the mean of the two middle values
  _assert_update(even.result, [2.5, 25, 6.5, -2.5], [2.5, 4, 2])
  assert even.measurements == collections.OrderedDict(num_clients=4)


def test_trimmed_mean_drops_floor_of_the_fraction_at_each_end(tff_context):
  del tff_context
  # K=5, 0.2: one per end, the mean of the middle three.
  out = _run(robust_aggregation.TrimmedMeanFactory(trim_fraction=0.2), CLIENTS)
  _assert_update(out.result, [2, 30, 7, -3], [11 / 3, 10 / 3, 2])
  assert out.measurements == collections.OrderedDict(num_clients=5, trimmed_per_end=1)
  # K=4, 0.2: floor(0.8) = 0, the plain mean.
  out = _run(robust_aggregation.TrimmedMeanFactory(trim_fraction=0.2), CLIENTS[:4])
  _assert_update(out.result, [3.5, 25, 6.75, -2.5], [3.5, 4, 2])
  assert out.measurements['trimmed_per_end'] == 0
  # K=4, 0.49: floor(1.96) = 1 per end, the two middle values (the median).
  out = _run(robust_aggregation.TrimmedMeanFactory(trim_fraction=0.49), CLIENTS[:4])
  _assert_update(out.result, [2.5, 25, 6.5, -2.5], [2.5, 4, 2])
  assert out.measurements['trimmed_per_end'] == 1


def test_the_trim_count_is_the_written_fraction_and_never_all():
  def count(num_clients, fraction):
    return int(robust_aggregation._trim_count(tf.constant(num_clients), fraction))
  assert count(100, 0.29) == 29   # 0.29 * 100 is 28.999999999999996 in binary
  assert count(10, 0.1) == 1 and count(9, 0.1) == 0
  assert count(2, 0.4999999999) == 0  # would otherwise drop both clients
  assert count(0, 0.3) == 0 and count(0, None) == 0
  assert count(7, None) == 3 and count(8, None) == 3


def test_nested_named_structures_come_back_in_their_containers(tff_context):
  del tff_context
  value_type = tff.types.StructWithPythonType([
      ('dense', tff.types.StructWithPythonType(
          [('kernel', tff.TensorType(np.float32, [2])), ('bias', tff.TensorType(np.float32))],
          collections.OrderedDict)),
      ('scale', tff.types.StructWithPythonType([tff.TensorType(np.float64, [1])], tuple)),
  ], collections.OrderedDict)
  values = [collections.OrderedDict(
      dense=collections.OrderedDict(kernel=np.float32([k, -k]), bias=np.float32(b)),
      scale=(np.float64([s]),)) for k, b, s in ((1, 9, 0.5), (4, 7, 0.25), (2, 8, 4.0))]
  out = _run(robust_aggregation.MedianFactory(), values, value_type)
  assert list(out.result) == ['dense', 'scale'] and list(out.result['dense']) == ['kernel', 'bias']
  np.testing.assert_allclose(out.result['dense']['kernel'], [2, -2])
  assert float(out.result['dense']['bias']) == 8
  assert isinstance(out.result['scale'], tuple)
  assert out.result['scale'][0].dtype == np.float64
  np.testing.assert_allclose(out.result['scale'][0], [0.5])
  # A single tensor is a value type too.
  single = _run(robust_aggregation.MedianFactory(), [np.float32([3, 1]), np.float32([1, 2])],
                tff.TensorType(np.float32, [2]))
  np.testing.assert_allclose(single.result, [2, 1.5])


def test_a_poisoning_client_moves_the_mean_but_not_the_median(tff_context):
  del tff_context
  honest = [_update(np.full(4, v), np.full(3, -v)) for v in (0.9, 1.0, 1.1, 1.2)]
  low, high = 0.9, 1.2
  for poison in (100.0, -1.0):  # 100x the honest scale; sign-flipped
    poisoned = honest + [_update(np.full(4, poison * 1.0), np.full(3, -poison * 1.0))]
    mean = _run(tff.aggregators.UnweightedMeanFactory(), poisoned).result
    assert not np.all((low <= mean[0]) & (mean[0] <= high)), poison
    for factory in (robust_aggregation.MedianFactory(),
                    robust_aggregation.TrimmedMeanFactory(trim_fraction=0.2)):
      robust = _run(factory, poisoned).result
      assert np.all((low <= robust[0]) & (robust[0] <= high)), (poison, factory, robust)
      assert np.all((-high <= robust[1]) & (robust[1] <= -low)), (poison, factory, robust)


def test_a_nan_is_an_extreme_value_trimmed_or_propagated_and_no_clients_give_nan(tff_context):
  del tff_context
  values = [np.float32([v, 1.0]) for v in (1.0, 2.0, 3.0, 4.0)]
  values.append(np.float32([np.nan, 1.0]))
  value_type = tff.TensorType(np.float32, [2])
  np.testing.assert_allclose(_run(robust_aggregation.MedianFactory(), values, value_type).result,
                             [3.0, 1.0])  # NaN sorts above 4: the median of 1,2,3,4,NaN is 3
  kept = _run(robust_aggregation.TrimmedMeanFactory(trim_fraction=0.0), values, value_type)
  assert np.isnan(kept.result[0]) and kept.result[1] == 1.0
  # No clients: NaN, as the mean's 0/0, and said in the measurements.
  empty = _run(robust_aggregation.MedianFactory(), [], value_type)
  assert np.all(np.isnan(empty.result)) and empty.measurements['num_clients'] == 0


def test_trim_fraction_and_value_types_are_checked():
  for bad in (0.5, -0.1, 1.0, float('nan')):
    with pytest.raises(errors.InputError, match=r'--trim_fraction=.*: expected a number in \[0, 0.5\)'):
      robust_aggregation.TrimmedMeanFactory(trim_fraction=bad)
  for bad in ('0.1', True, None):
    with pytest.raises(errors.InputError, match='--trim_fraction'):
      robust_aggregation.TrimmedMeanFactory(trim_fraction=bad)
  with pytest.raises(TypeError):
    robust_aggregation.TrimmedMeanFactory(0.1)  # keyword-only
  assert robust_aggregation.TrimmedMeanFactory(trim_fraction=0).trim_fraction == 0.0
  median = robust_aggregation.MedianFactory()
  with pytest.raises(TypeError, match='float'):
    median.create(tff.TensorType(np.int32, [2]))
  with pytest.raises(TypeError, match='fully defined'):
    median.create(tff.TensorType(np.float32, [None]))
  with pytest.raises(TypeError, match='no tensor'):
    median.create(tff.StructType([]))


def test_as_weighted_aggregator_ignores_the_weights(tff_context):
  del tff_context
  weighted = tff.aggregators.as_weighted_aggregator(robust_aggregation.MedianFactory())
  assert isinstance(weighted, tff.aggregators.WeightedAggregationFactory)
  process = weighted.create(UPDATE_TYPE, tff.TensorType(np.float32))
  # A weight of 100 on the first client would make any weighted rule follow it.
  out = process.next(process.initialize(), CLIENTS[:3], [np.float32(w) for w in (100, 1, 1)])
  _assert_update(out.result, [2, 20, 7, -2], [4, 3, 2])


def test_unweighted_fed_avg_with_the_median_runs_a_round(tff_context):
  """One round of TFF's FedAvg: the new model is the median of the models each
  client alone would have produced (the server optimizer is SGD with rate 1)."""
  del tff_context

  process = tff.learning.algorithms.build_unweighted_fed_avg(
      helpers.linear_model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1),
      model_aggregator=robust_aggregation.MedianFactory())
  datasets = []
  for k, slope in enumerate((1.0, 2.0, -50.0)):  # the third client is far off
    x = np.random.default_rng(k).normal(size=(8, 2)).astype(np.float32)
    y = (x @ np.float32([[slope], [0.5]])).astype(np.float32)
    datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
  state = process.initialize()
  alone = [process.get_model_weights(process.next(state, [d]).state).trainable
           for d in datasets]
  output = process.next(state, datasets)
  assert output.metrics['aggregator'] == collections.OrderedDict(num_clients=3)
  for i, weights in enumerate(process.get_model_weights(output.state).trainable):
    expected = np.median(np.stack([a[i] for a in alone]), axis=0)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    assert np.any(weights != 0)


# The filtered mean: FilteredMeanFactory (weighted) and UnweightedFilteredMeanFactory.

def _run_weighted(factory, values, weights, value_type=UPDATE_TYPE):
  process = factory.create(value_type, tff.TensorType(np.float32))
  return process.next(process.initialize(), values, [np.float32(w) for w in weights])


def _filtered_reference(updates, weights, *, min_cosine=0.2, norm_multiplier=1.0):
  """The filtered mean in NumPy, on flattened updates: (result, kept, clipped)."""
  flat = np.array([np.concatenate([np.ravel(t) for t in u]) for u in updates], np.float64)
  reference = np.median(flat, axis=0)
  norms = np.linalg.norm(flat, axis=1)
  kept = flat @ reference / (norms * np.linalg.norm(reference)) > min_cosine
  bound = norm_multiplier * np.median(norms)
  clipped = kept & (norms > bound)
  scales = np.where(clipped, bound / norms, 1.0)
  kept_weights = np.where(kept, np.asarray(weights, np.float64), 0.0)
  return (kept_weights * scales) @ flat / kept_weights.sum(), kept, clipped


def _flat(update):
  return np.concatenate([np.ravel(t) for t in update])


def test_filtered_mean_processes_have_the_aggregator_types(tff_context):
  del tff_context
  weighted = robust_aggregation.FilteredMeanFactory()
  assert isinstance(weighted, tff.aggregators.WeightedAggregationFactory)
  assert (weighted.min_cosine, weighted.norm_multiplier) == (0.2, 1.0)
  unweighted = robust_aggregation.UnweightedFilteredMeanFactory(min_cosine=0.0, norm_multiplier=2)
  assert isinstance(unweighted, tff.aggregators.UnweightedAggregationFactory)
  assert (unweighted.min_cosine, unweighted.norm_multiplier) == (0.0, 2.0)
  for process, parameters in ((weighted.create(UPDATE_TYPE, tff.TensorType(np.float32)), 3),
                              (unweighted.create(UPDATE_TYPE), 2)):
    signature = process.next.type_signature
    assert len(signature.parameter) == parameters
    assert signature.parameter[1].placement == tff.CLIENTS
    assert signature.parameter[1].member.is_identical_to(UPDATE_TYPE)
    assert signature.result.result.placement == tff.SERVER
    assert signature.result.result.member.is_identical_to(UPDATE_TYPE)
    measurements = signature.result.measurements
    assert measurements.placement == tff.SERVER
    assert [name for name, _ in tff.structure.iter_elements(measurements.member)] == [
        'num_clients', 'num_kept', 'num_clipped']


def test_filtered_mean_drops_the_anti_aligned_clips_the_large_and_weights_the_rest(tff_context):
  del tff_context
  rng = np.random.default_rng(0)
  direction = rng.normal(size=7)
  honest = [direction * scale + rng.normal(scale=0.3, size=7) for scale in (1.0, 1.5, 0.8, 3.0)]
  updates = [_update(u[:4], u[4:]) for u in honest]
  updates.append(_update(-2 * direction[:4], -2 * direction[4:]))  # sign-flipped, heavy
  weights = [40, 10, 5, 3, 100]
  expected, kept, clipped = _filtered_reference(updates, weights)
  # The case is what it says: the heavy client is dropped, the 3.0-scaled one clipped.
  assert kept.tolist() == [True, True, True, True, False]
  assert clipped.tolist() == [False, False, False, True, False]
  out = _run_weighted(robust_aggregation.FilteredMeanFactory(), updates, weights)
  np.testing.assert_allclose(_flat(out.result), expected, rtol=1e-5)
  assert out.measurements == collections.OrderedDict(num_clients=5, num_kept=4, num_clipped=1)
  # Unweighted: every client weighs 1.
  out = _run(robust_aggregation.UnweightedFilteredMeanFactory(), updates)
  np.testing.assert_allclose(_flat(out.result), _filtered_reference(updates, [1] * 5)[0], rtol=1e-5)
  # A threshold above every honest cosine keeps nobody: zero, and said.
  out = _run_weighted(robust_aggregation.FilteredMeanFactory(min_cosine=0.999999), updates, weights)
  assert not np.any(_flat(out.result)) and out.measurements['num_kept'] == 0


def test_filtered_mean_without_filtering_is_the_weighted_mean(tff_context):
  """Nothing dropped (min_cosine=-1) or clipped (norm_multiplier=inf): TFF's own
  weighted mean, on updates of mixed signs and sizes."""
  del tff_context
  weights = [7, 1, 3, 2, 5]
  factory = robust_aggregation.FilteredMeanFactory(min_cosine=-1, norm_multiplier=float('inf'))
  out = _run_weighted(factory, CLIENTS, weights)
  mean = _run_weighted(tff.aggregators.MeanFactory(), CLIENTS, weights)
  np.testing.assert_allclose(_flat(out.result), _flat(mean.result), rtol=1e-6)
  assert out.measurements == collections.OrderedDict(num_clients=5, num_kept=5, num_clipped=0)


def test_a_heavy_poisoning_client_moves_the_weighted_mean_but_not_the_filtered_mean(tff_context):
  del tff_context
  honest = [_update(np.full(4, v), np.full(3, -v)) for v in (0.9, 1.0, 1.1, 1.2)]
  weights = [1, 1, 1, 1, 10]  # the attacker holds most of the weight
  for poison in (100.0, -1.0, -100.0):  # boosted; sign-flipped; both
    poisoned = honest + [_update(np.full(4, poison), np.full(3, -poison))]
    mean = _run_weighted(tff.aggregators.MeanFactory(), poisoned, weights).result
    assert not np.all((0.9 <= mean[0]) & (mean[0] <= 1.2)), poison
    out = _run_weighted(robust_aggregation.FilteredMeanFactory(), poisoned, weights)
    assert np.all((0.9 <= out.result[0]) & (out.result[0] <= 1.2)), (poison, out.result)
    assert np.all((-1.2 <= out.result[1]) & (out.result[1] <= -0.9)), (poison, out.result)
    # Boosted: kept but clipped to the median norm; flipped: dropped.
    assert out.measurements['num_kept'] == (5 if poison > 0 else 4), poison


def test_filtered_mean_drops_non_finite_updates_and_gives_zero_for_no_clients(tff_context):
  del tff_context
  value_type = tff.TensorType(np.float32, [2])
  # Half of the clients non-finite, and one of them heavy: the reference and the
  # median norm are those of the finite updates, so the rest are kept as they are.
  values = [np.float32([1.0, 2.0]), np.float32([1.0, 2.0]), np.float32([np.nan, 2.0]),
            np.float32([np.inf, 2.0])]
  out = _run_weighted(robust_aggregation.FilteredMeanFactory(), values, [1, 1, 9, 1], value_type)
  np.testing.assert_allclose(out.result, [1.0, 2.0])
  assert out.measurements == collections.OrderedDict(num_clients=4, num_kept=2, num_clipped=0)
  # A non-finite weight drops its client too.
  values = [np.float32([1.0, 2.0]), np.float32([3.0, 6.0]), np.float32([2.0, 4.0])]
  out = _run_weighted(robust_aggregation.FilteredMeanFactory(norm_multiplier=float('inf')),
                      values, [1, 1, np.nan], value_type)
  np.testing.assert_allclose(out.result, [2.0, 4.0])
  assert out.measurements['num_kept'] == 2
  empty = _run_weighted(robust_aggregation.FilteredMeanFactory(), [], [], value_type)
  np.testing.assert_array_equal(empty.result, [0.0, 0.0])
  assert empty.measurements['num_clients'] == 0


def test_filtered_mean_options_and_types_are_checked():
  for bad in (1.0, -1.5, float('nan'), '0.2', True):
    with pytest.raises(errors.InputError, match=r'--min_cosine=.*: expected a number in \[-1, 1\)'):
      robust_aggregation.FilteredMeanFactory(min_cosine=bad)
  for bad in (0, -1.0, float('nan'), None, True):
    with pytest.raises(errors.InputError, match=r'--norm_multiplier=.*: expected a number > 0'):
      robust_aggregation.UnweightedFilteredMeanFactory(norm_multiplier=bad)
  with pytest.raises(TypeError):
    robust_aggregation.FilteredMeanFactory(0.2)  # keyword-only
  factory = robust_aggregation.FilteredMeanFactory()
  with pytest.raises(TypeError, match='weight'):
    factory.create(UPDATE_TYPE, tff.TensorType(np.float32, [2]))
  with pytest.raises(TypeError, match='float'):
    factory.create(tff.TensorType(np.int32, [2]), tff.TensorType(np.float32))


def test_weighted_fed_avg_with_the_filtered_mean_runs_a_round(tff_context):
  """One round of TFF's weighted FedAvg: the new model is the initial one minus
  the filtered mean of the updates each client alone would have sent."""
  del tff_context

  process = helpers.linear_process(model_aggregator=robust_aggregation.FilteredMeanFactory())
  datasets, sizes = [], (4, 8, 12, 16)
  for k, (slope, size) in enumerate(zip((1.0, 1.5, 2.0, -50.0), sizes)):  # the last is far off
    x = np.random.default_rng(k).normal(size=(size, 2)).astype(np.float32)
    y = (x @ np.float32([[slope], [0.5]])).astype(np.float32)
    datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
  state = process.initialize()
  initial = process.get_model_weights(state).trainable
  alone = [process.get_model_weights(process.next(state, [d]).state).trainable for d in datasets]
  updates = [[i - a for i, a in zip(initial, model, strict=True)] for model in alone]
  expected, kept, _ = _filtered_reference(updates, sizes)
  assert kept.tolist() == [True, True, True, False]
  output = process.next(state, datasets)
  assert output.metrics['aggregator']['num_kept'] == 3
  new = process.get_model_weights(output.state).trainable
  np.testing.assert_allclose(_flat(new), _flat(initial) - expected, rtol=1e-5, atol=1e-6)

"""Robust aggregation: the coordinate-wise median and trimmed mean of client
updates, and the weighted mean of the updates the median vouches for.

TFF 0.87 has no order-statistic aggregator; these are `tff.aggregators`
factories that `tff_common.aggregation` hands to TFF's learning-algorithm
builders (`model_aggregator=` of `build_unweighted_fed_avg`,
`build_weighted_fed_avg`, `build_fed_sgd`, `build_fed_recon`'s
`model_aggregator_factory`, ...):

  MedianFactory()                          per coordinate, the median of the K clients' values
  TrimmedMeanFactory(trim_fraction=beta)   per coordinate, the mean after dropping the
                                           floor(beta * K) smallest and as many largest values
  FilteredMeanFactory(min_cosine=c,        the example-weighted mean of the updates whose
                      norm_multiplier=m)   cosine with the coordinate-wise median is above c,
                                           each clipped to m times the median norm
                                           (UnweightedFilteredMeanFactory: every weight 1)

A coordinate's result depends only on the order of the clients' values, so
fewer than half of the clients for the median, or at most the floor(beta * K)
trimmed at each end for the trimmed mean, cannot move it outside the range of
the honest clients' values, however large or sign-flipped their updates; the
mean can be moved anywhere by a single client. The filtered mean keeps that
reference but also the honest clients' weights (see `FilteredMeanFactory`).

The median's and trimmed mean's processes have the federated type, for a
value type V (any structure of float tensors with fully defined shapes, e.g.
a model's trainable weights):

  initialize: ( -> <>@SERVER)
  next:       (<state=<>@SERVER, value={V}@CLIENTS> ->
               <state=<>@SERVER, result=V@SERVER, measurements=M@SERVER>)

with M = <num_clients=int32> for the median and
<num_clients=int32, trimmed_per_end=int32> for the trimmed mean.

Where things run:
*   Clients send their update as it is, in the clear: nothing is computed on a
    client. The server therefore sees every individual update. This is why
    neither aggregator can be combined with secure aggregation: secure
    aggregation reveals only the SUM of the updates, and a median or trimmed
    mean is not a function of the sum (it needs each client's value at each
    coordinate). Differential privacy of the released model would likewise
    need a different mechanism from the clipped-and-noised sum.
*   The aggregation is one `tff.federated_aggregate`: `accumulate` stacks each
    client's tensors along a new leading axis (a `float[?, ...]` accumulator),
    `merge` concatenates two stacks, and `report` sorts each coordinate over
    that axis and averages the kept middle values. Wherever TFF places these
    (the server; intermediate aggregators; the workers of TFF's multi-worker
    `create_mergeable_comp_execution_context`, which aggregates each chunk of
    CLIENTS and merges the partial stacks), they hold individual updates.
    Concatenation is associative and the order statistics ignore the order of
    the clients, so chunking and merging give the same result as one pass.
*   Memory and time: the server (and each merging worker) holds all K copies
    of the update, K times the model's size, where the mean holds one running
    sum. Accumulating by concatenation copies the stack once per client
    (O(K^2 * size) bytes copied), and `report` sorts K values per coordinate.
    Meant for tens to a few hundred clients per round, not for millions.

They are unweighted by nature: every client counts once, whatever its number
of examples (a weighted median would let one client with many examples
outvote the rest, which is what robustness is meant to prevent). Where a
builder requires a weighted factory (e.g. `build_weighted_fed_avg`,
`build_fed_sgd`), `tff.aggregators.as_weighted_aggregator(factory)` wraps either
one; it ignores the weights.

Edge cases: with no clients the result is NaN (as TFF's mean's 0/0). A NaN
from a client sorts above +inf: it is an extreme value like any other, trimmed
when it falls among the dropped values and propagated (the coordinate's result
is NaN) when it does not; it is never silently treated as a number.
"""

import collections
import numbers
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_common import checks

# Added to trim_fraction * K before the floor, so that a fraction written in
# decimal trims what it says: 0.29 * 100 is 28.999999999999996 in binary.
_FLOOR_SLACK = 1e-9


class MedianFactory(tff.aggregators.UnweightedAggregationFactory):
  """The coordinate-wise median of the clients' values (unweighted).

  For K clients: the middle value of each coordinate for odd K, the mean of
  the two middle values for even K (as `numpy.median`). The federated type and
  where things run: see the module docstring. Measurements:
  `num_clients` (K).
  """

  def create(self, value_type) -> tff.templates.AggregationProcess:
    return _build_process(value_type, trim_fraction=None)


class TrimmedMeanFactory(tff.aggregators.UnweightedAggregationFactory):
  """The coordinate-wise trimmed mean of the clients' values (unweighted).

  For K clients, each coordinate's values are sorted, the
  floor(`trim_fraction` * K) smallest and as many largest are dropped, and the
  rest are averaged. At least one value (two for even K) is always kept, so a
  fraction close to 0.5 gives the median, and `trim_fraction=0` the plain
  mean. The federated type and where things run: see the module docstring.
  Measurements: `num_clients` (K) and `trimmed_per_end` (the number of values
  dropped at each end of every coordinate).
  """

  def __init__(self, *, trim_fraction: float):
    """Checks `trim_fraction` (before any TFF type is built).

    Args:
      trim_fraction: In [0, 0.5): the fraction of clients dropped at EACH end
        of every coordinate.

    Raises:
      errors.InputError: `--trim_fraction=...: expected ...` for a value that
        is not a number in [0, 0.5).
    """
    if isinstance(trim_fraction, bool) or not isinstance(trim_fraction, numbers.Real):
      checks.fail('trim_fraction', trim_fraction, 'a number in [0, 0.5)')
    checks.in_range('trim_fraction', trim_fraction, 0, 0.5, high_open=True)
    self._trim_fraction = float(trim_fraction)

  @property
  def trim_fraction(self) -> float:
    return self._trim_fraction

  def create(self, value_type) -> tff.templates.AggregationProcess:
    return _build_process(value_type, trim_fraction=self._trim_fraction)


def _check_value_type(value_type) -> list:
  """The tensor types of `value_type`, in TFF's order; refuses what cannot be stacked."""
  if not isinstance(value_type, (tff.TensorType, tff.StructType)):
    raise TypeError(f'expected a tensor or a structure of tensors, got {value_type}')
  if not tff.types.is_structure_of_floats(value_type):
    raise TypeError(f'the value must be a structure of float tensors, got {value_type}')
  leaves = tff.structure.flatten(value_type)
  if not leaves:
    raise TypeError(f'the value has no tensor to aggregate: {value_type}')
  for leaf in leaves:
    # The empty stack (the aggregation's zero) needs each tensor's shape.
    if not tff.types.is_shape_fully_defined(leaf.shape):
      raise TypeError(f'every tensor needs a fully defined shape, got {leaf} in {value_type}')
  return leaves


def _leaves(value, value_type) -> list:
  """A value of `value_type` as its flat list of tensors.

  Through `tff.structure`, not `tf.nest`: TFF orders an OrderedDict's fields as
  declared, `tf.nest` sorts them by name.
  """
  if isinstance(value_type, tff.TensorType):
    return [value]
  return tff.structure.flatten(tff.structure.from_container(value, recursive=True))


def _trim_count(num_clients, trim_fraction: Optional[float]):
  """Values dropped at each end: all but the middle one or two for the median."""
  most = tf.maximum((num_clients - 1) // 2, 0)
  if trim_fraction is None:
    return most
  trim = tf.cast(tf.floor(trim_fraction * tf.cast(num_clients, tf.float64) + _FLOOR_SLACK),
                 tf.int32)
  return tf.minimum(trim, most)


def _trimmed_mean(stack, trim):
  """The mean over axis 0 of `stack` without its `trim` smallest and largest values.

  `tf.sort` orders NaN arbitrarily, so NaNs are sorted as +inf and then put
  back in the top places of their coordinate: NaN sorts above +inf.
  """
  num_clients = tf.shape(stack)[0]
  is_nan = tf.math.is_nan(stack)
  ordered = tf.sort(tf.where(is_nan, tf.constant(float('inf'), stack.dtype), stack), axis=0)
  nan_count = tf.reduce_sum(tf.cast(is_nan, tf.int32), axis=0)
  rank = tf.reshape(tf.range(num_clients), [-1] + [1] * (stack.shape.rank - 1))
  ordered = tf.where(rank >= num_clients - nan_count,
                     tf.constant(float('nan'), stack.dtype), ordered)
  # No clients: the mean of nothing, NaN (as TFF's mean's 0/0).
  return tf.reduce_mean(ordered[trim:num_clients - trim], axis=0)


def _build_process(value_type, *, trim_fraction: Optional[float]):
  """The `AggregationProcess` of both factories (median: `trim_fraction=None`)."""
  leaf_types = _check_value_type(value_type)
  stack_type = tff.types.StructWithPythonType(
      [tff.TensorType(t.dtype, [None, *t.shape]) for t in leaf_types], list)

  @tff.tensorflow.computation
  def zero():
    return [tf.zeros([0, *t.shape], t.dtype) for t in leaf_types]

  @tff.tensorflow.computation(stack_type, value_type)
  def accumulate(stacks, value):
    return [tf.concat([stack, leaf[tf.newaxis]], axis=0)
            for stack, leaf in zip(stacks, _leaves(value, value_type), strict=True)]

  @tff.tensorflow.computation(stack_type, stack_type)
  def merge(stacks, other_stacks):
    return [tf.concat([a, b], axis=0) for a, b in zip(stacks, other_stacks, strict=True)]

  @tff.tensorflow.computation(stack_type)
  def report(stacks):
    num_clients = tf.shape(stacks[0])[0]
    trim = _trim_count(num_clients, trim_fraction)
    leaves = [_trimmed_mean(stack, trim) for stack in stacks]
    if isinstance(value_type, tff.TensorType):
      result = leaves[0]
    else:
      # Back into the caller's structure and Python containers, so that the
      # result's type is the value type (the learning process checks it).
      result = tff.types.type_to_py_container(
          tff.structure.pack_sequence_as(value_type, leaves), value_type)
    measurements = collections.OrderedDict(num_clients=num_clients)
    if trim_fraction is not None:
      measurements['trimmed_per_end'] = trim
    return result, measurements

  @tff.federated_computation
  def init_fn():
    return tff.federated_value((), tff.SERVER)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(value_type, tff.CLIENTS))
  def next_fn(state, value):
    aggregate = tff.federated_aggregate(value, zero(), accumulate, merge, report)
    return tff.templates.MeasuredProcessOutput(
        state=state, result=aggregate[0], measurements=aggregate[1])

  return tff.templates.AggregationProcess(init_fn, next_fn)


class FilteredMeanFactory(tff.aggregators.WeightedAggregationFactory):
  """The weighted mean of the updates that point where the median points.

  For K clients with updates u_k and weights n_k (example counts), on the
  server, per round:

    1. reference r: the coordinate-wise median of the K updates (unweighted,
       as `MedianFactory`: fewer than half of the clients cannot move it
       outside the range of the others' values);
    2. a client is kept if its update and weight are finite and
       cos(u_k, r) > `min_cosine` (a zero update or a zero reference has
       cosine 0): a sign-flipped update, or one trained on flipped labels,
       points away from r and is dropped whatever its weight. A non-finite
       client is also left out of r and of the median norm below;
    3. every kept update whose L2 norm (over all its tensors) exceeds
       `norm_multiplier` times the median of the clients' norms is scaled
       down to that bound: a boosted update that does point the right way
       counts no more than an ordinary one (its weight is unchanged);
    4. the result is sum_kept n_k u_k / sum_kept n_k: the example-weighted
       mean of the kept, clipped updates. If no client is kept (or there is
       none) the result is zero, so the server's model does not move, and
       `num_kept` says so.

  Unlike the median and trimmed mean, the honest clients keep their weights:
  without an attack most clients are kept and the result is close to the
  plain weighted mean (the median instead gives a client with 67 examples as
  much say as one with 1929). What it defends against is any update that is
  anti-aligned with, or much larger than, those of the median client; a
  minority of clients (by count, not by weight) cannot move the reference.
  What it does not: an attacker whose update points near the median's
  direction with an ordinary norm (a small, aligned bias) is kept with its
  full weight; and an honest client whose update happens to point away from
  the median's (late in training, when updates are mostly noise) is dropped
  for that round. The cosine threshold depends on the model: the more
  coordinates, the closer to 0 the cosines of noisy updates.

  The federated type, for a value type V (float tensors with fully defined
  shapes) and a weight type W (a float or integer scalar):

    initialize: ( -> <>@SERVER)
    next:       (<state=<>@SERVER, value={V}@CLIENTS, weight={W}@CLIENTS> ->
                 <state=<>@SERVER, result=V@SERVER,
                  measurements=<num_clients=int32, num_kept=int32,
                                num_clipped=int32>@SERVER>)

  Where things run: as for `MedianFactory` (module docstring), every client
  sends its update and weight as they are, in the clear, and all four steps
  run where the `federated_aggregate`'s `report` runs (the server): the
  filter needs every individual update, so this cannot run under secure
  aggregation. Memory: K copies of the update.

  The filter is in the spirit of FLTrust (Cao et al. 2021: cosine with a
  reference update, norms scaled to the reference's), with the
  coordinate-wise median of the round's updates as the reference instead of
  an update computed on server-held data, which this federation does not
  have; and of norm bounding (Sun et al. 2019).
  """

  def __init__(self, *, min_cosine: float = 0.2, norm_multiplier: float = 1.0):
    """Checks the options (before any TFF type is built).

    Args:
      min_cosine: In [-1, 1): a client is kept if the cosine between its
        update and the coordinate-wise median is above this. On the credit
        job (bench/credit_poisoning.py, a sign-flipping bank with 58% of the
        examples) 0 cost 0.011 pooled AUC, 0.2 0.008, 0.3 0.007.
      norm_multiplier: A number > 0: kept updates are clipped to this many
        times the median of the round's update norms (`math.inf`: never
        clipped).

    Raises:
      errors.InputError: `--min_cosine=...` or `--norm_multiplier=...:
        expected ...` for a value out of range or not a number.
    """
    if isinstance(min_cosine, bool) or not isinstance(min_cosine, numbers.Real):
      checks.fail('min_cosine', min_cosine, 'a number in [-1, 1)')
    checks.in_range('min_cosine', min_cosine, -1, 1, high_open=True)
    if isinstance(norm_multiplier, bool) or not isinstance(norm_multiplier, numbers.Real):
      checks.fail('norm_multiplier', norm_multiplier, 'a number > 0')
    checks.positive('norm_multiplier', norm_multiplier)
    self._min_cosine = float(min_cosine)
    self._norm_multiplier = float(norm_multiplier)

  @property
  def min_cosine(self) -> float:
    return self._min_cosine

  @property
  def norm_multiplier(self) -> float:
    return self._norm_multiplier

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    if not (isinstance(weight_type, tff.TensorType) and weight_type.shape == ()
            and np.issubdtype(weight_type.dtype, np.number)
            and not np.issubdtype(weight_type.dtype, np.complexfloating)):
      raise TypeError(f'the weight must be a float or integer scalar, got {weight_type}')
    return _build_filtered_process(value_type, weight_type, min_cosine=self._min_cosine,
                                   norm_multiplier=self._norm_multiplier)


class UnweightedFilteredMeanFactory(tff.aggregators.UnweightedAggregationFactory):
  """`FilteredMeanFactory` with every client's weight 1: the uniform mean of
  the kept, clipped updates (for TFF's unweighted builders). Its `next` is
  `(<state=<>@SERVER, value={V}@CLIENTS> -> <state, result=V@SERVER,
  measurements=M@SERVER>)`, with the same M."""

  def __init__(self, *, min_cosine: float = 0.2, norm_multiplier: float = 1.0):
    self._weighted = FilteredMeanFactory(min_cosine=min_cosine, norm_multiplier=norm_multiplier)

  @property
  def min_cosine(self) -> float:
    return self._weighted.min_cosine

  @property
  def norm_multiplier(self) -> float:
    return self._weighted.norm_multiplier

  def create(self, value_type) -> tff.templates.AggregationProcess:
    return _build_filtered_process(value_type, None, min_cosine=self.min_cosine,
                                   norm_multiplier=self.norm_multiplier)


def _filtered_mean(stacks, weights, *, min_cosine: float, norm_multiplier: float):
  """Steps 1-4 of `FilteredMeanFactory` on stacked updates ([K, ...] each) and
  weights (float64[K]); returns (the result's tensors, measurements)."""
  num_clients = tf.shape(weights)[0]

  def per_client(values):  # a sum over every coordinate of every tensor, per client
    return tf.add_n([tf.reduce_sum(tf.reshape(v, [num_clients, -1]), axis=1) for v in values])

  # In float64: in float32 the square of a value above 2e19 (a boosted
  # update) would overflow and drop an update that is merely large.
  stacks64 = [tf.cast(stack, tf.float64) for stack in stacks]
  norms = tf.sqrt(per_client([tf.square(stack) for stack in stacks64]))
  # A non-finite update (NaN or inf anywhere: a non-finite norm) or weight is
  # dropped before anything else, never averaged as a number; the reference
  # and the median norm are those of the finite clients.
  finite = tf.math.is_finite(norms) & tf.math.is_finite(weights)
  num_finite = tf.reduce_sum(tf.cast(finite, tf.int32))
  middle = _trim_count(num_finite, None)  # all but the middle one or two: the median
  references = [_trimmed_mean(tf.boolean_mask(stack, finite), middle) for stack in stacks64]
  dots = per_client([tf.where(tf.reshape(finite, [-1] + [1] * (stack.shape.rank - 1)),
                              stack, tf.zeros_like(stack)) * ref[tf.newaxis]
                     for stack, ref in zip(stacks64, references, strict=True)])
  reference_norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(ref)) for ref in references]))
  # A zero vector has no direction: cosine 0 rather than 0/0.
  cosines = tf.math.divide_no_nan(dots, norms * reference_norm)
  keep = finite & (cosines > min_cosine)
  # An infinite multiplier gives an infinite bound (NaN for a zero median):
  # nothing is clipped.
  bound = norm_multiplier * _trimmed_mean(tf.boolean_mask(norms, finite), middle)
  clipped = keep & (norms > bound)
  scales = tf.where(clipped, bound / norms, tf.ones_like(norms))
  kept_weights = tf.where(keep, weights * scales, tf.zeros_like(weights))
  total = tf.reduce_sum(tf.where(keep, weights, tf.zeros_like(weights)))
  leaves = []
  for stack, stack64 in zip(stacks, stacks64, strict=True):
    shape = [num_clients] + [1] * (stack.shape.rank - 1)
    # tf.where, not a product: a dropped client's NaN times 0 is still NaN.
    values = tf.where(tf.reshape(keep, shape), stack64, tf.zeros_like(stack64))
    weighted_sum = tf.reduce_sum(values * tf.reshape(kept_weights, shape), axis=0)
    # Nobody kept (or no clients): zero, the model stays where it is.
    leaves.append(tf.cast(tf.math.divide_no_nan(weighted_sum, total), stack.dtype))
  measurements = collections.OrderedDict(
      num_clients=num_clients,
      num_kept=tf.reduce_sum(tf.cast(keep, tf.int32)),
      num_clipped=tf.reduce_sum(tf.cast(clipped, tf.int32)))
  return leaves, measurements


def _build_filtered_process(value_type, weight_type, *, min_cosine: float,
                            norm_multiplier: float):
  """The `AggregationProcess` of both filtered-mean factories (weight_type None: unweighted)."""
  leaf_types = _check_value_type(value_type)
  stack_type = tff.types.StructWithPythonType(
      [tff.types.StructWithPythonType(
          [tff.TensorType(t.dtype, [None, *t.shape]) for t in leaf_types], list),
       tff.TensorType(np.float64, [None])], list)

  @tff.tensorflow.computation
  def zero():
    return [[tf.zeros([0, *t.shape], t.dtype) for t in leaf_types], tf.zeros([0], tf.float64)]

  def append(accumulator, value, weight):
    stacks, weights = accumulator
    return [[tf.concat([stack, leaf[tf.newaxis]], axis=0)
             for stack, leaf in zip(stacks, _leaves(value, value_type), strict=True)],
            tf.concat([weights, tf.reshape(tf.cast(weight, tf.float64), [1])], axis=0)]

  if weight_type is None:
    @tff.tensorflow.computation(stack_type, value_type)
    def accumulate(accumulator, value):
      return append(accumulator, value, 1.0)
  else:
    client_type = tff.types.StructWithPythonType([value_type, weight_type], list)

    @tff.tensorflow.computation(stack_type, client_type)
    def accumulate(accumulator, value_and_weight):
      return append(accumulator, value_and_weight[0], value_and_weight[1])

  @tff.tensorflow.computation(stack_type, stack_type)
  def merge(accumulator, other):
    return [[tf.concat([a, b], axis=0) for a, b in zip(accumulator[0], other[0], strict=True)],
            tf.concat([accumulator[1], other[1]], axis=0)]

  @tff.tensorflow.computation(stack_type)
  def report(accumulator):
    leaves, measurements = _filtered_mean(list(accumulator[0]), accumulator[1],
                                          min_cosine=min_cosine, norm_multiplier=norm_multiplier)
    if isinstance(value_type, tff.TensorType):
      result = leaves[0]
    else:
      result = tff.types.type_to_py_container(
          tff.structure.pack_sequence_as(value_type, leaves), value_type)
    return result, measurements

  @tff.federated_computation
  def init_fn():
    return tff.federated_value((), tff.SERVER)

  if weight_type is None:
    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS))
    def next_fn(state, value):
      aggregate = tff.federated_aggregate(value, zero(), accumulate, merge, report)
      return tff.templates.MeasuredProcessOutput(
          state=state, result=aggregate[0], measurements=aggregate[1])
  else:
    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS),
                               tff.FederatedType(weight_type, tff.CLIENTS))
    def next_fn(state, value, weight):
      # The value and its weight travel together to the server's stack.
      aggregate = tff.federated_aggregate(tff.federated_zip([value, weight]), zero(), accumulate,
                                          merge, report)
      return tff.templates.MeasuredProcessOutput(
          state=state, result=aggregate[0], measurements=aggregate[1])

  return tff.templates.AggregationProcess(init_fn, next_fn)

"""Robust aggregation: the coordinate-wise median and trimmed mean of client updates.

TFF 0.87 has no order-statistic aggregator; these two are `tff.aggregators`
factories that `tff_common.aggregation` hands to TFF's learning-algorithm
builders (`model_aggregator=` of `build_unweighted_fed_avg`,
`build_weighted_fed_avg`, `build_fed_sgd`, `build_fed_recon`'s
`model_aggregator_factory`, ...):

  MedianFactory()                          per coordinate, the median of the K clients' values
  TrimmedMeanFactory(trim_fraction=beta)   per coordinate, the mean after dropping the
                                           floor(beta * K) smallest and as many largest values

A coordinate's result depends only on the order of the clients' values, so
fewer than half of the clients for the median, or at most the floor(beta * K)
trimmed at each end for the trimmed mean, cannot move it outside the range of
the honest clients' values, however large or sign-flipped their updates; the
mean can be moved anywhere by a single client.

Both processes have the federated type, for a value type V (any structure of
float tensors with fully defined shapes, e.g. a model's trainable weights):

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

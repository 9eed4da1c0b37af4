"""Sparsified client updates: top-k and random-k sums as TFF aggregation factories.

Each client sends, of every tensor of its update with more than `threshold`
values, only k = ceil(fraction * n) of its n values (Aji & Heafield 2017;
Stich et al. 2018; Konecny et al. 2016); the server sums what it receives.
The factories are `tff.aggregators.UnweightedAggregationFactory` sums, meant
as the `value_sum_factory` of `tff.aggregators.MeanFactory` or
`UnweightedMeanFactory` (as `tff_common.aggregation` uses TFF's
`EncodedSumFactory`), or as the `record_aggregation_factory` of
`tff.aggregators.DifferentiallyPrivateFactory` (top-k only, see below):

  TopKSumFactory(fraction=f, threshold=t)      each client keeps the k coordinates of
                                               largest magnitude of each tensor
  RandomKSumFactory(fraction=f, threshold=t)   each client keeps k coordinates chosen
                                               uniformly at random, times n / k

Federated types, for a value type V (any structure of float tensors with fully
defined shapes, e.g. a model's trainable weights):

  top-k     initialize: ( -> <>@SERVER)
            next: (<state=<>@SERVER, value={V}@CLIENTS> ->
                   <state=<>@SERVER, result=V@SERVER, measurements=<kept_fraction=float32>@SERVER>)
  random-k  initialize: ( -> int64[2]@SERVER)      (the seed, the round)
            next: (<state=int64[2]@SERVER, value={V}@CLIENTS> ->
                   <state=int64[2]@SERVER, result=V@SERVER, measurements=<kept_fraction=float32>@SERVER>)

Where things run: on the CLIENTS, each client sparsifies its own value (a
`federated_map`; random-k first receives the server's state by
`federated_broadcast`); the sparse values go up by `federated_sum`; the SERVER
advances random-k's round. `kept_fraction` (values sent over values of the
update: sum of k over sum of n) is computed from V alone, not from any client's
data, so it releases nothing about clients, also under differential privacy.

What is simulated: a client's message is k values and where they go (int32
indices, or a bitmap of n bits when smaller; for random-k, an 8-byte seed from
which the server regenerates the indices). TFF has no sparse wire format, so
the value summed here is the dense tensor with zeros at the coordinates not
sent: the arithmetic is that of the sparse message, the saving is modelled by
the byte count (`message`, used by `tff_common.aggregation.update_bytes`), not
by what TFF moves. A tensor is sent dense (unchanged) when it has at most
`threshold` values, when its sparse message would not be smaller than the
dense one (k close to n), or when it has a NaN or infinite value (so that a
diverged client's update reaches the server as under the plain mean, instead
of losing its non-finite values by chance).

Bias and variance, for one client's tensor x with n values:
*   top-k is biased (deterministic): it drops the n - k smallest magnitudes,
    an error of at most (1 - k / n) * ||x||^2 in squared norm. Error feedback
    (adding what a client dropped to its next update, Stich et al. 2018) would
    correct the bias over rounds, but needs state kept on each client from one
    round to the next: TFF's clients are stateless (cross-device clients are
    sampled afresh and the learning process's state lives at SERVER), so it is
    not implemented. Ties in magnitude go to the lower index.
*   random-k is unbiased: every coordinate is kept with probability k / n and
    then scaled by n / k, so its expectation is x; the variance it adds is
    (n / k - 1) * ||x||^2 (summed over coordinates), independent across
    clients.

Randomness of random-k: a TFF client computation does not know which client it
is, so each client derives its seed from what it has: the server's state (the
run's seed and the round, broadcast), folded with a 64-bit fingerprint of the
tensor's own values and the tensor's position (`tf.random.experimental.
stateless_fold_in`, Philox). A run is therefore bit-reproducible: the same seed,
round and update give the same coordinates, and the round counter is part of
the aggregator's state, checkpointed with the learning process, so a resumed
run draws what an uninterrupted one would. The price: two clients with exactly
the same tensor in the same round keep the same coordinates (their errors are
then correlated, not independent; distinct updates give independent streams).

Composition:
*   With differential privacy (`tff_common.dp`; `DifferentiallyPrivateFactory`
    with this factory as `record_aggregation_factory`): the query clips each
    record to L2 norm C on the client, then the record is sparsified. Top-k
    only removes coordinates, so the sparsified record's norm is at most the
    clipped one's, <= C, and the sensitivity the noise is calibrated to holds.
    Random-k's n / k rescaling multiplies the kept values, so a record's norm
    can reach n / k * C (all of its mass on the kept coordinates; sqrt(n / k)
    * C in root mean square): it breaks the clip bound and must not be
    composed with DP.
    `RandomKSumFactory(rescale=False)` keeps the plain mask (norm <= C, so DP
    holds), at the price of a sum biased by k / n per sparsified tensor; scaling
    the noised result back by n / k afterwards is post-processing (DP is kept),
    but it scales the noise by n / k too.
*   With secure aggregation: a sparse message tells the server which
    coordinates a client sent (in recommendation, which items it touched: its
    largest updates are its rated items), which is what secure aggregation is
    meant to hide. Under a secure sum every client must contribute a dense
    vector (its masks cover every coordinate), so nothing is saved: the two do
    not combine usefully, and these factories sum in the clear
    (`federated_sum`): the server sees each client's sparse update.
"""

import collections
import dataclasses
import math
import numbers

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_common import checks

TOPK = 'topk'
RANDK = 'randk'
METHODS = (TOPK, RANDK)

# Subtracted from fraction * n before the ceiling, so that a fraction written
# in decimal keeps what it says: 0.1 * 30 is 3.0000000000000004 in binary.
_CEIL_SLACK = 1e-9
_INDEX_BYTES = 4  # an int32 index
_SEED_BYTES = 8   # random-k's 64-bit fingerprint, from which the server regenerates the indices


@dataclasses.dataclass(frozen=True)
class Message:
  """What one client sends for one tensor: `kept` values in `nbytes` bytes
  (`kept` equals the tensor's size when it is sent dense)."""
  kept: int
  nbytes: int


def message(size: int, *, method: str, fraction: float, threshold: int,
            itemsize: int = 4) -> Message:
  """The message of one client's tensor of `size` values (a pure function).

  Sparse: k = ceil(`fraction` * size) values of `itemsize` bytes, plus where
  they go, in the cheapest of: k int32 indices (4k bytes), a bitmap of size
  bits (ceil(size / 8) bytes: cheaper once fraction > 1/32), and for random-k
  the client's 8-byte seed (the server regenerates the indices). Dense (all
  `size` values of `itemsize` bytes) when size <= `threshold` or when the
  sparse message would not be smaller.
  """
  dense = Message(size, size * itemsize)
  if size <= threshold:
    return dense
  kept = max(1, math.ceil(fraction * size - _CEIL_SLACK))
  index_bytes = min(kept * _INDEX_BYTES, math.ceil(size / 8))
  if method == RANDK:
    index_bytes = min(index_bytes, _SEED_BYTES)
  sparse = Message(kept, kept * itemsize + index_bytes)
  return sparse if sparse.nbytes < dense.nbytes else dense


class TopKSumFactory(tff.aggregators.UnweightedAggregationFactory):
  """The sum of the clients' values, each client keeping its k largest magnitudes per tensor.

  Biased (it never sends the small coordinates); composable with differential
  privacy (it does not increase a clipped record's norm). The federated type,
  what runs where, and the message: see the module docstring.
  """

  def __init__(self, *, fraction: float, threshold: int):
    """Checks the arguments (before any TFF type is built).

    Args:
      fraction: In (0, 1]: k = ceil(fraction * n) of a tensor's n values are sent.
      threshold: Tensors with at most this many values are sent dense.

    Raises:
      errors.InputError: `--keep_fraction=...` or `--compression_threshold=...:
        expected ...` for a value out of range.
    """
    self._fraction, self._threshold = _checked(fraction, threshold)

  def create(self, value_type) -> tff.templates.AggregationProcess:
    return _build_process(value_type, method=TOPK, fraction=self._fraction,
                          threshold=self._threshold)


class RandomKSumFactory(tff.aggregators.UnweightedAggregationFactory):
  """The sum of the clients' values, each client keeping k random coordinates per tensor.

  With `rescale` (the default) the kept values are multiplied by n / k: the
  sum is unbiased, its variance grows by (n / k - 1) * ||x||^2 per client
  tensor x, and it must not be composed with differential privacy (the
  rescaling raises a record's norm above the clip). Without, the plain mask:
  biased by k / n, norm-preserving. Randomness and reproducibility, the
  federated type and what runs where: see the module docstring.
  """

  def __init__(self, *, fraction: float, threshold: int, seed: int = 0, rescale: bool = True):
    """Checks the arguments (before any TFF type is built).

    Args:
      fraction: In (0, 1]: k = ceil(fraction * n) of a tensor's n values are sent.
      threshold: Tensors with at most this many values are sent dense.
      seed: The run's seed, the first half of the state's stateless seed.
      rescale: Whether kept values are scaled by n / k (unbiased sum).

    Raises:
      errors.InputError: `--keep_fraction=...` or `--compression_threshold=...:
        expected ...` for a value out of range.
    """
    self._fraction, self._threshold = _checked(fraction, threshold)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
      checks.fail('seed', seed, 'an integer')
    self._seed = int(seed)
    self._rescale = bool(rescale)

  def create(self, value_type) -> tff.templates.AggregationProcess:
    return _build_process(value_type, method=RANDK, fraction=self._fraction,
                          threshold=self._threshold, seed=self._seed, rescale=self._rescale)


def _checked(fraction, threshold) -> tuple[float, int]:
  if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
    checks.fail('keep_fraction', fraction, 'a number in (0, 1]')
  checks.in_range('keep_fraction', fraction, 0, 1, low_open=True)
  if isinstance(threshold, bool) or not isinstance(threshold, numbers.Integral):
    checks.fail('compression_threshold', threshold, 'an integer >= 0')
  checks.at_least('compression_threshold', threshold, 0)
  return float(fraction), int(threshold)


def _check_value_type(value_type) -> list:
  """The tensor types of `value_type`, in TFF's order; refuses what cannot be sparsified."""
  if not isinstance(value_type, (tff.TensorType, tff.StructType)):
    raise TypeError(f'expected a tensor or a structure of tensors, got {value_type}')
  if not tff.types.is_structure_of_floats(value_type):
    raise TypeError(f'the value must be a structure of float tensors, got {value_type}')
  leaves = tff.structure.flatten(value_type)
  for leaf in leaves:
    # k is fixed when the computation is built: every size must be known.
    if not tff.types.is_shape_fully_defined(leaf.shape):
      raise TypeError(f'every tensor needs a fully defined shape, got {leaf} in {value_type}')
  return leaves


def _leaves(value, value_type) -> list:
  """A value of `value_type` as its flat list of tensors, in TFF's order (not `tf.nest`'s)."""
  if isinstance(value_type, tff.TensorType):
    return [value]
  return tff.structure.flatten(tff.structure.from_container(value, recursive=True))


def _pack(leaves, value_type):
  """`leaves` back in `value_type`'s structure and Python containers (the sum's
  result type must be the value type: the learning process checks it)."""
  if isinstance(value_type, tff.TensorType):
    return leaves[0]
  return tff.types.type_to_py_container(
      tff.structure.pack_sequence_as(value_type, leaves), value_type)


def _keep(x, indices, scale):
  """`x` with only the values at `indices` (into its flattening), times `scale`; zeros elsewhere."""
  flat = tf.reshape(x, [-1])
  kept = tf.gather(flat, indices) * tf.cast(scale, x.dtype)
  sparse = tf.reshape(tf.scatter_nd(indices[:, tf.newaxis], kept, tf.shape(flat)), tf.shape(x))
  # A non-finite tensor goes dense: its NaN or inf must not be dropped by chance.
  return tf.where(tf.reduce_all(tf.math.is_finite(x)), sparse, x)


def _top_k(x, kept: int):
  _, indices = tf.math.top_k(tf.abs(tf.reshape(x, [-1])), k=kept)  # ties: the lower index
  return _keep(x, indices, 1.0)


def _random_k(x, kept: int, seed, *, rescale: bool):
  """k coordinates of `x` drawn uniformly without replacement (the k largest of
  n uniform keys), from `seed` folded with `x`'s fingerprint."""
  fingerprint = tf.bitcast(tf.fingerprint(tf.reshape(x, [1, -1]))[0], tf.int64)
  seed = tf.random.experimental.stateless_fold_in(seed, fingerprint, alg='philox')
  size = x.shape.num_elements()
  keys = tf.random.stateless_uniform([size], seed=seed, alg='philox')
  _, indices = tf.math.top_k(keys, k=kept)
  return _keep(x, indices, size / kept if rescale else 1.0)


def _build_process(value_type, *, method: str, fraction: float, threshold: int, seed: int = 0,
                   rescale: bool = True) -> tff.templates.AggregationProcess:
  leaf_types = _check_value_type(value_type)
  plan = [message(math.prod(t.shape), method=method, fraction=fraction, threshold=threshold,
                  itemsize=np.dtype(t.dtype).itemsize) for t in leaf_types]
  total = sum(math.prod(t.shape) for t in leaf_types)
  kept_fraction = np.float32(sum(m.kept for m in plan) / total if total else 1.0)
  seed_type = tff.TensorType(np.int64, [2])

  def sparsify(leaves, state=None):
    out = []
    for index, (leaf, leaf_type, sent) in enumerate(zip(leaves, leaf_types, plan, strict=True)):
      if sent.kept == math.prod(leaf_type.shape):
        out.append(leaf)  # dense
      elif method == TOPK:
        out.append(_top_k(leaf, sent.kept))
      else:
        # One stream per tensor: the round's seed, then the tensor's position.
        tensor_seed = tf.random.experimental.stateless_fold_in(
            state, tf.constant(index, tf.int64), alg='philox')
        out.append(_random_k(leaf, sent.kept, tensor_seed, rescale=rescale))
    return _pack(out, value_type)

  if method == TOPK:
    @tff.tensorflow.computation(value_type)
    def client_sparsify(value):
      return sparsify(_leaves(value, value_type))

    @tff.federated_computation
    def init_fn():
      return tff.federated_value((), tff.SERVER)
  else:
    @tff.tensorflow.computation(value_type, seed_type)
    def client_sparsify(value, state):
      return sparsify(_leaves(value, value_type), state)

    @tff.tensorflow.computation
    def initial_state():
      return tf.constant([seed, 0], tf.int64)

    @tff.tensorflow.computation(seed_type)
    def advance(state):
      return state + tf.constant([0, 1], tf.int64)

    @tff.federated_computation
    def init_fn():
      return tff.federated_eval(initial_state, tff.SERVER)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(value_type, tff.CLIENTS))
  def next_fn(state, value):
    if method == TOPK:
      sparse = tff.federated_map(client_sparsify, value)
      new_state = state
    else:
      sparse = tff.federated_map(client_sparsify, (value, tff.federated_broadcast(state)))
      new_state = tff.federated_map(advance, state)
    measurements = tff.federated_value(
        collections.OrderedDict(kept_fraction=kept_fraction), tff.SERVER)
    return tff.templates.MeasuredProcessOutput(
        state=new_state, result=tff.federated_sum(sparse), measurements=measurements)

  return tff.templates.AggregationProcess(init_fn, next_fn)

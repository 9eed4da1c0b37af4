"""The one place where both jobs choose how client updates are aggregated.

Runs on the server side of every round: the returned factory is passed as
`model_aggregator` to TFF's learning algorithm builders. Each job's config
extends `AggregatorConfig`, so every aggregator added here (differential
privacy, secure sum, robust) reaches both jobs through the same flags.

  mean          the (weighted or uniform) mean of the clients' updates, sent as float32
  compressed    the same mean of updates that each client quantizes to
                `quantization_bits` bits per value before sending (uniform
                quantization between the tensor's min and max, bit-packed: TFF's
                `EncodedSumFactory.quantize_above_threshold`, Suresh et al. 2017);
                tensors of at most `compression_threshold` values go as float32.
  topk          the same mean of updates of which each client sends, per tensor
                of more than `compression_threshold` values, only the
                ceil(`keep_fraction` * n) of largest magnitude (biased; error
                feedback is not possible with TFF's stateless clients):
                `tff_common.sparsification.TopKSumFactory`.
  randk         the same, each client sending `keep_fraction` of each tensor's
                values chosen at random, scaled by n / k (unbiased, more
                variance): `tff_common.sparsification.RandomKSumFactory`.
  secure        secure aggregation (Bonawitz et al. 2017): TFF's
                `tff.learning.secure_aggregator`. Each client clips its
                (weighted) update to bounds the server estimates from the
                previous rounds (adaptive zeroing, L2 clipping, then
                per-coordinate bounds), quantizes it to 32-bit integers and
                takes part in `federated_secure_sum_bitwidth`: the server
                learns the cohort's sum, never one client's update.
  robust        TFF's `tff.learning.robust_aggregator`: the mean after
                adaptive zeroing (an update whose L2 norm exceeds twice the
                estimated 0.98 quantile of norms, plus 1, is replaced by zeros)
                and adaptive L2 clipping (to the estimated 0.8 quantile,
                starting at 1.0); the server estimates both from the norms.
  median        the coordinate-wise median of the updates
                (`tff_common.robust_aggregation`), unweighted.
  trimmed_mean  the coordinate-wise mean after dropping the `trim_fraction`
                largest and smallest values of every coordinate, unweighted.
  filtered_mean the (weighted or uniform) mean of the updates whose cosine with
                the coordinate-wise median of the updates is above `min_cosine`,
                each clipped to `norm_multiplier` times the median update norm
                (`tff_common.robust_aggregation.FilteredMeanFactory`): honest
                clients keep their weights, an anti-aligned or boosted one is
                dropped or clipped, whatever its weight.

What the server sees (`server_sees_individual_updates`): under every
aggregator but `secure`, the server receives each client's update. `median`
and `trimmed_mean` need them: an order statistic is not a function of the sum,
so they cannot run under secure aggregation; nor can `filtered_mean`, whose
filter needs each update. In this project's simulation the
secure sum is compiled to a plain sum (`tff_common.runtime`): the types and the
arithmetic are those of the protocol, the cryptography is not run.

`update_bytes` says what one client's update costs on the wire under each.
"""

import dataclasses
import math
from collections.abc import Iterable

from tff_common import checks

NAMES = ('mean', 'compressed', 'topk', 'randk', 'secure', 'robust', 'median', 'trimmed_mean',
         'filtered_mean')
# Aggregators whose clients send a sparse update (`tff_common.sparsification`).
SPARSE = ('topk', 'randk')
# Aggregators whose result is an order statistic: unweighted by nature.
UNWEIGHTED_ONLY = ('median', 'trimmed_mean')
# Uniform quantization sends, besides the packed values, the tensor's minimum
# and maximum (two float32), and packs the values into 32-bit words.
_QUANTIZATION_SIDE_BYTES = 8
_PACKING_WORD_BITS = 32


@dataclasses.dataclass(frozen=True)
class AggregatorConfig:
  """How the server aggregates client updates (`--aggregator` and its options).

  Attributes:
    aggregator: One of `NAMES`.
    quantization_bits: Bits per value of a compressed update, 1 to 16.
    compression_threshold: Tensors with at most this many values are sent
      as float32, neither quantized nor sparsified (quantizing a handful of
      values costs more than it saves: the side values alone are two
      floats). TFF's own default, 20,000, would leave the credit model
      uncompressed.
    trim_fraction: Under `trimmed_mean`, the share of clients whose values
      are dropped at each end of every coordinate (floor of it times the
      round's clients; 0.2 of 5 banks drops one highest and one lowest).
    keep_fraction: Under `topk` and `randk`, the fraction of each tensor's
      values a client sends, in (0, 1] (k = ceil(fraction * n)).
    min_cosine: Under `filtered_mean`, an update is kept if its cosine with
      the coordinate-wise median of the round's updates is above this, in
      [-1, 1).
    norm_multiplier: Under `filtered_mean`, kept updates are clipped to this
      many times the median of the round's update norms (> 0).
  """
  aggregator: str = 'mean'
  quantization_bits: int = 8
  compression_threshold: int = 16
  trim_fraction: float = 0.2
  keep_fraction: float = 0.1
  min_cosine: float = 0.2
  norm_multiplier: float = 1.0

  def check(self):
    checks.one_of('aggregator', self.aggregator, NAMES)
    checks.in_range('quantization_bits', self.quantization_bits, 1, 16)
    if self.quantization_bits != int(self.quantization_bits):
      checks.fail('quantization_bits', self.quantization_bits, 'an integer from 1 to 16')
    checks.at_least('compression_threshold', self.compression_threshold, 0)
    checks.in_range('trim_fraction', self.trim_fraction, 0, 0.5, high_open=True)
    checks.in_range('keep_fraction', self.keep_fraction, 0, 1, low_open=True)
    checks.in_range('min_cosine', self.min_cosine, -1, 1, high_open=True)
    checks.positive('norm_multiplier', self.norm_multiplier)


# The default: the plain mean (frozen, so one instance serves every caller).
MEAN = AggregatorConfig()


def server_sees_individual_updates(config: AggregatorConfig) -> bool:
  """Whether the server receives each client's update (else only the cohort's sum).

  What a curious server can attack: under `secure` only the aggregate of a
  round's cohort; under the others one client's update as the client sends
  it: quantized (`compressed`), sparsified (`topk`, `randk`), clipped to the
  norm bound the server broadcast (`robust`: TFF clips on the clients, and
  zeroes there too), or as it is (`mean`, `median`, `trimmed_mean`). Central
  differential privacy (`tff_common.dp`) clips on the clients and adds its
  noise on the server, after the sum: the server itself still sees each
  clipped update unless the sum is secure.
  """
  config.check()
  return config.aggregator != 'secure'


def build_aggregator(config: AggregatorConfig, *, weighted: bool, ignore_weights: bool = False,
                     seed: int = 0):
  """Returns the `tff.aggregators` factory `config` names.

  The factory's process runs inside a learning process's round: its `next`
  has the federated type `(<S@SERVER, {V}@CLIENTS, {float32}@CLIENTS> ->
  <S@SERVER, V@SERVER, ...>)` when weighted (the client values V and their
  weights: the weighted mean) and `(<S@SERVER, {V}@CLIENTS> -> ...)` when not
  (the uniform 1/K mean). Under 'compressed', each client encodes its
  (weighted) value before it leaves the client, and the server decodes the
  sum; under 'secure' the sums are `federated_secure_sum_bitwidth`; under
  'median' and 'trimmed_mean' the weights, if any, are ignored.

  Args:
    config: The aggregator and its options.
    weighted: Whether updates are weighted by the algorithm's client weights
      (e.g. example counts); if False, an unweighted factory (uniform 1/K).
    ignore_weights: For algorithms that only accept a weighted factory (TFF's
      FedSGD): a weighted-API factory that ignores the weights, i.e. the
      uniform 1/K mean of the textbook formula. Requires `weighted=False`.
    seed: Under `randk`, the run's seed (with the round and each client's
      update, it decides the coordinates sent: reproducible).
  """
  # TFF only here, so that configs can name an aggregator without importing it.
  import tensorflow_federated as tff

  if ignore_weights and weighted:
    raise ValueError('ignore_weights asks for a uniform mean; pass weighted=False')
  config.check()
  if config.aggregator in UNWEIGHTED_ONLY:
    from tff_common import robust_aggregation
    if config.aggregator == 'median':
      factory = robust_aggregation.MedianFactory()
    else:
      factory = robust_aggregation.TrimmedMeanFactory(trim_fraction=config.trim_fraction)
    # An order statistic has no weighted form here: behind the weighted API the
    # client weights are ignored (every client counts once).
    return tff.aggregators.as_weighted_aggregator(factory) if weighted or ignore_weights else factory
  if config.aggregator == 'filtered_mean':
    from tff_common import robust_aggregation
    options = dict(min_cosine=config.min_cosine, norm_multiplier=config.norm_multiplier)
    factory = (robust_aggregation.FilteredMeanFactory(**options) if weighted
               else robust_aggregation.UnweightedFilteredMeanFactory(**options))
  elif config.aggregator == 'secure':
    factory = tff.learning.secure_aggregator(weighted=weighted)
  elif config.aggregator == 'robust':
    factory = tff.learning.robust_aggregator(weighted=weighted)
  else:
    sum_factory = None
    if config.aggregator == 'compressed':
      sum_factory = tff.aggregators.EncodedSumFactory.quantize_above_threshold(
          quantization_bits=int(config.quantization_bits),
          threshold=int(config.compression_threshold))
    elif config.aggregator in SPARSE:
      from tff_common import sparsification
      if config.aggregator == 'topk':
        sum_factory = sparsification.TopKSumFactory(
            fraction=config.keep_fraction, threshold=int(config.compression_threshold))
      else:
        sum_factory = sparsification.RandomKSumFactory(
            fraction=config.keep_fraction, threshold=int(config.compression_threshold),
            seed=int(seed))
    if weighted:
      factory = tff.aggregators.MeanFactory(value_sum_factory=sum_factory)
    else:
      factory = tff.aggregators.UnweightedMeanFactory(value_sum_factory=sum_factory)
  if ignore_weights:
    factory = tff.aggregators.as_weighted_aggregator(factory)
  return factory


def metrics_aggregator(config: AggregatorConfig, *, release: bool = True):
  """How the clients' training metrics reach the server, to match `config`.

  TFF sums the clients' metric values (losses, counts, AUC's confusion
  counts) with a plain `federated_sum`, so even under secure aggregation of
  the model update the server would see each client's metrics. Under
  `secure` they are secure-summed too (`tff.learning.metrics.
  secure_sum_then_finalize`, each value clipped to TFF's default [0, 2^20 - 1]
  range and the clipping counted); otherwise TFF's default,
  `sum_then_finalize`. Passed as `metrics_aggregator` to TFF's builders.

  With `release=False` (differential privacy: the DP aggregator protects the
  model update, not these sums) the clients' metrics never reach the server:
  the aggregation takes them at CLIENTS and returns an empty structure at
  SERVER, with no intrinsic that moves a client value.
  """
  import tensorflow_federated as tff

  config.check()
  if not release:
    return _discard_metrics
  if config.aggregator == 'secure':
    return tff.learning.metrics.secure_sum_then_finalize
  return tff.learning.metrics.sum_then_finalize


def _discard_metrics(metric_finalizers, local_unfinalized_metrics_type=None):
  """A TFF metrics aggregator that releases nothing (see `metrics_aggregator`)."""
  del metric_finalizers
  import tensorflow_federated as tff

  def aggregate(client_metrics):
    del client_metrics
    return tff.federated_value((), tff.SERVER)

  if local_unfinalized_metrics_type is None:
    # Some builders (FedAvg's client work) ask for a polymorphic computation.
    return tff.federated_computation(aggregate)
  return tff.federated_computation(
      aggregate, tff.FederatedType(local_unfinalized_metrics_type, tff.CLIENTS))


def update_bytes(config: AggregatorConfig, shapes: Iterable[tuple[int, ...]], *,
                 weighted: bool, itemsize: int = 4) -> int:
  """Bytes one client sends for its model update under `config`.

  Under `secure`, each value goes as a 32-bit integer (TFF quantizes floats to
  [0, 2^32 - 1] for the secure sum), so the count equals float32's; the
  protocol's own messages (key agreement, masks to unmask dropped clients,
  O(cohort) per client) are not counted. Under `topk` and `randk`, a tensor
  costs its k values plus the cheapest encoding of where they go
  (`tff_common.sparsification.message`): k int32 indices, an n-bit bitmap, or
  (random-k) the 8-byte seed the server regenerates them from.

  Args:
    config: The aggregator.
    shapes: The shape of each tensor of the update (those of the trainable weights).
    weighted: Whether the client also sends its weight (one float32).
    itemsize: Bytes of one uncompressed value (float32: 4).
  """
  total = _FLOAT32_BYTES if weighted else 0
  for shape in shapes:
    values = math.prod(shape)
    if config.aggregator in SPARSE:
      from tff_common import sparsification
      total += sparsification.message(
          values, method=config.aggregator, fraction=config.keep_fraction,
          threshold=config.compression_threshold, itemsize=itemsize).nbytes
    elif config.aggregator == 'compressed' and values > config.compression_threshold:
      words = math.ceil(values * config.quantization_bits / _PACKING_WORD_BITS)
      total += words * _PACKING_WORD_BITS // 8 + _QUANTIZATION_SIDE_BYTES
    else:
      total += values * itemsize
  return total


_FLOAT32_BYTES = 4

"""The one place where both jobs choose how client updates are aggregated.

Runs on the server side of every round: the returned factory is passed as
`model_aggregator` to TFF's learning algorithm builders. Each job's config
extends `AggregatorConfig`, so every aggregator added here (differential
privacy, secure sum, robust) reaches both jobs through the same flags.

  mean        the (weighted or uniform) mean of the clients' updates, sent as float32
  compressed  the same mean of updates that each client quantizes to
              `quantization_bits` bits per value before sending (uniform
              quantization between the tensor's min and max, bit-packed: TFF's
              `EncodedSumFactory.quantize_above_threshold`, Suresh et al. 2017);
              tensors of at most `compression_threshold` values go as float32.

`update_bytes` says what one client's update costs on the wire under each.
"""

import dataclasses
import math
from collections.abc import Iterable

from tff_common import checks

NAMES = ('mean', 'compressed')
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
      uncompressed (quantizing a handful of values costs more than it saves:
      the side values alone are two floats). TFF's own default, 20,000, would
      leave the credit model uncompressed.
  """
  aggregator: str = 'mean'
  quantization_bits: int = 8
  compression_threshold: int = 16

  def check(self):
    checks.one_of('aggregator', self.aggregator, NAMES)
    checks.in_range('quantization_bits', self.quantization_bits, 1, 16)
    if self.quantization_bits != int(self.quantization_bits):
      checks.fail('quantization_bits', self.quantization_bits, 'an integer from 1 to 16')
    checks.at_least('compression_threshold', self.compression_threshold, 0)


# The default: the plain mean (frozen, so one instance serves every caller).
MEAN = AggregatorConfig()


def build_aggregator(config: AggregatorConfig, *, weighted: bool, ignore_weights: bool = False):
  """Returns the `tff.aggregators` factory `config` names.

  The factory's process runs inside a learning process's round: its `next`
  has the federated type `(<S@SERVER, {V}@CLIENTS, {float32}@CLIENTS> ->
  <S@SERVER, V@SERVER, ...>)` when weighted (the client values V and their
  weights: the weighted mean) and `(<S@SERVER, {V}@CLIENTS> -> ...)` when not
  (the uniform 1/K mean). Under 'compressed', each client encodes its
  (weighted) value before it leaves the client, and the server decodes the
  sum.

  Args:
    config: The aggregator and its options.
    weighted: Whether updates are weighted by the algorithm's client weights
      (e.g. example counts); if False, an unweighted factory (uniform 1/K).
    ignore_weights: For algorithms that only accept a weighted factory (TFF's
      FedSGD): a weighted-API factory that ignores the weights, i.e. the
      uniform 1/K mean of the textbook formula. Requires `weighted=False`.
  """
  # TFF only here, so that configs can name an aggregator without importing it.
  import tensorflow_federated as tff

  if ignore_weights and weighted:
    raise ValueError('ignore_weights asks for a uniform mean; pass weighted=False')
  config.check()
  sum_factory = None
  if config.aggregator == 'compressed':
    sum_factory = tff.aggregators.EncodedSumFactory.quantize_above_threshold(
        quantization_bits=int(config.quantization_bits),
        threshold=int(config.compression_threshold))
  if weighted:
    factory = tff.aggregators.MeanFactory(value_sum_factory=sum_factory)
  else:
    factory = tff.aggregators.UnweightedMeanFactory(value_sum_factory=sum_factory)
  if ignore_weights:
    factory = tff.aggregators.as_weighted_aggregator(factory)
  return factory


def update_bytes(config: AggregatorConfig, shapes: Iterable[tuple[int, ...]], *,
                 weighted: bool, itemsize: int = 4) -> int:
  """Bytes one client sends for its model update under `config`.

  Args:
    config: The aggregator.
    shapes: The shape of each tensor of the update (those of the trainable weights).
    weighted: Whether the client also sends its weight (one float32).
    itemsize: Bytes of one uncompressed value (float32: 4).
  """
  total = _FLOAT32_BYTES if weighted else 0
  for shape in shapes:
    values = math.prod(shape)
    if config.aggregator == 'compressed' and values > config.compression_threshold:
      words = math.ceil(values * config.quantization_bits / _PACKING_WORD_BITS)
      total += words * _PACKING_WORD_BITS // 8 + _QUANTIZATION_SIDE_BYTES
    else:
      total += values * itemsize
  return total


_FLOAT32_BYTES = 4

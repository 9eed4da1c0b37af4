"""tff_common.communication: the bytes of a round, against the hand computation."""

import numpy as np

from tff_common import aggregation
from tff_common import communication


class _ModelWeights:
  def __init__(self, trainable, non_trainable):
    self.trainable, self.non_trainable = trainable, non_trainable


WEIGHTS = _ModelWeights(trainable=[np.zeros((3, 2), np.float32), np.zeros(2, np.float32)],
                        non_trainable=[np.zeros(4, np.float32)])


def test_plain_mean_by_hand():
  wire = communication.Wire(aggregator=aggregation.MEAN, weighted=True)
  # Down: every weight, trainable or not, as float32: 4 * (6 + 2 + 4).
  # Up: the update of the trainable weights, 4 * (6 + 2), and the client's weight, 4.
  assert wire.per_client(WEIGHTS) == (48, 36)
  assert communication.Wire(aggregator=aggregation.MEAN, weighted=False).per_client(WEIGHTS) == (48, 32)
  assert wire.round_metrics(WEIGHTS, clients=5) == {
      'bytes_down': 240.0, 'bytes_up': 180.0,
      'bytes_down_per_client': 48.0, 'bytes_up_per_client': 36.0}


def test_compressed_by_hand():
  eight_bits = aggregation.AggregatorConfig('compressed', quantization_bits=8,
                                            compression_threshold=0)
  wire = communication.Wire(aggregator=eight_bits, weighted=True)
  # Each tensor: its values packed 8 bits each into 32-bit words, plus min and max
  # (two float32): (6 -> 2 words) 8 + 8 and (2 -> 1 word) 4 + 8; plus the weight, 4.
  assert wire.per_client(WEIGHTS) == (48, 16 + 12 + 4)
  # Under the threshold a tensor goes as float32.
  above_two = aggregation.AggregatorConfig('compressed', quantization_bits=8,
                                           compression_threshold=2)
  assert communication.Wire(aggregator=above_two, weighted=True).per_client(WEIGHTS) == (
      48, 16 + 8 + 4)

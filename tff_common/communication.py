"""What a round moves over the network: the broadcast down, the updates up.

Computed from what the learning process sends: down, the model weights the
server broadcasts to each sampled client (every tensor of
`process.get_model_weights(state)`, trainable and not, at its dtype); up, each
client's model update, one tensor per trainable weight, in the encoding of the
aggregator (`tff_common.aggregation.update_bytes`: float32, or quantized values
plus their side values), and its weight when the mean is weighted. Clients'
training metrics (a few scalar sums per round) are not counted.
"""

import dataclasses

import numpy as np

from tff_common import aggregation

# Metric names of a round (released with the round's other metrics).
BYTES_DOWN = 'bytes_down'
BYTES_UP = 'bytes_up'
BYTES_DOWN_PER_CLIENT = 'bytes_down_per_client'
BYTES_UP_PER_CLIENT = 'bytes_up_per_client'


@dataclasses.dataclass(frozen=True)
class Wire:
  """The encoding of a process's messages: its aggregator, and whether clients
  send a weight with their update."""
  aggregator: aggregation.AggregatorConfig
  weighted: bool

  def per_client(self, model_weights) -> tuple[int, int]:
    """(bytes down, bytes up) of one sampled client in one round.

    Args:
      model_weights: `tff.learning.models.ModelWeights` of the process's state.
    """
    trainable = [np.asarray(w) for w in model_weights.trainable]
    non_trainable = [np.asarray(w) for w in model_weights.non_trainable]
    down = sum(w.nbytes for w in trainable + non_trainable)
    up = self.weighted * _WEIGHT_BYTES + sum(
        aggregation.update_bytes(self.aggregator, [w.shape], weighted=False,
                                 itemsize=w.dtype.itemsize) for w in trainable)
    return down, up

  def round_metrics(self, model_weights, clients: int) -> dict[str, float]:
    """The bytes of a round with `clients` sampled clients, as metrics."""
    down, up = self.per_client(model_weights)
    return {BYTES_DOWN: float(down * clients), BYTES_UP: float(up * clients),
            BYTES_DOWN_PER_CLIENT: float(down), BYTES_UP_PER_CLIENT: float(up)}


_WEIGHT_BYTES = 4  # a float32

"""tff_rec.algorithms: nothing user-shaped reaches the server under Federated Reconstruction."""

import tensorflow_federated as tff

from tests.tff_rec import helpers
from tff_rec import algorithms


def _shapes(type_spec):
  """Every tensor shape inside a TFF type."""
  shapes = []
  def visit(t):
    if isinstance(t, tff.TensorType):
      shapes.append(tuple(t.shape))
    elif isinstance(t, tff.FederatedType):
      visit(t.member)
    elif isinstance(t, tff.StructType):
      for _, member in tff.structure.iter_elements(t):
        visit(member)
    elif isinstance(t, tff.SequenceType):
      visit(t.element)
    elif isinstance(t, tff.FunctionType):
      if t.parameter is not None:
        visit(t.parameter)
      visit(t.result)
  visit(type_spec)
  return shapes


class _Recording:
  """Wraps the aggregator so a test sees the type of what clients send."""

  def __init__(self, inner):
    self.inner = inner
    self.value_types = []

  def create(self, value_type, weight_type):
    self.value_types.append(value_type)
    return self.inner.create(value_type, weight_type)


def _recording_aggregator(monkeypatch):
  recording = _Recording(tff.aggregators.MeanFactory())
  # A WeightedAggregationFactory for TFF's type checks, recording on create.
  factory = type('RecordingFactory', (tff.aggregators.WeightedAggregationFactory,),
                 {'create': lambda self, v, w: recording.create(v, w)})()
  monkeypatch.setattr(algorithms.aggregation, 'build_aggregator',
                      lambda name, weighted: factory)
  return recording


def test_no_user_embedding_or_bias_reaches_the_server(tiny_split, monkeypatch):
  recording = _recording_aggregator(monkeypatch)
  dim, num_items = helpers.TINY['dim'], tiny_split.num_items
  process, layers = algorithms.build_process(tiny_split,
                                             helpers.tiny_config(algorithm='fedrecon'))
  global_shapes = {(num_items, dim), (num_items, 1), ()}
  # What clients send (the aggregated update) is exactly the item parameters
  # of both heads and the offset.
  (sent,) = recording.value_types
  assert sorted(_shapes(sent)) == sorted([(num_items, dim), (num_items, 1), ()] +
                                         [(num_items, dim), (num_items, 1)])
  assert layers == ['item_factors', 'item_bias', 'offset', 'implicit_item_factors',
                    'implicit_item_bias']
  # The server state and everything process.next takes or returns holds no
  # user-shaped tensor: user factors are [1, dim] and user bias [1, 1] on a client.
  state_shapes = set(_shapes(process.next.type_signature.result.state))
  assert state_shapes <= global_shapes | {(None,)}
  for shape in _shapes(process.next.type_signature):
    assert shape not in {(1, dim), (1, 1), (len(tiny_split.train), dim)}
  # The FedAvg comparison does ship the user table, which is why it is only a comparison.
  recording.value_types.clear()
  algorithms.build_process(tiny_split, helpers.tiny_config(algorithm='fedavg'))
  assert (len(tiny_split.train), dim) in _shapes(recording.value_types[0])

"""tff_rec.algorithms: nothing user-shaped reaches the server under Federated Reconstruction."""

import pytest
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
                      lambda name, weighted, **kwargs: factory)
  return recording


def test_no_user_embedding_or_bias_reaches_the_server(tiny_split, monkeypatch):
  recording = _recording_aggregator(monkeypatch)
  dim, num_items = helpers.TINY['dim'], tiny_split.num_items
  process, layers = algorithms.build_process(tiny_split,
                                             helpers.tiny_config(algorithm='fedrecon'))
  global_shapes = {(num_items, dim), (num_items, 1), ()}
  # What clients send (the aggregated update, in one part per head under the
  # default per-head weighting) is exactly the item parameters of both heads
  # and the offset.
  sent = [shape for value_type in recording.value_types for shape in _shapes(value_type)]
  assert sorted(sent) == sorted([(num_items, dim), (num_items, 1), ()] +
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


def test_client_loop_in_one_graph_matches_tffs_fed_recon(tiny_split):
  # algorithms.build_fed_recon runs TFF's FedRecon client update as loops of
  # one graph (a round several times cheaper); on the same batches it must
  # reach the weights and metrics of TFF's own builder, up to float rounding.
  import functools

  import numpy as np

  from tff_common import aggregation
  from tff_rec import clients
  from tff_rec import model as model_lib
  config = helpers.tiny_config()
  model_fn = model_lib.reconstruction_model_fn(**config.model_kwargs(tiny_split))
  ours = algorithms.build_fed_recon(
      model_fn=model_fn, client_lr=config.client_lr, server_lr=config.effective_server_lr(),
      recon_lr=config.recon_lr, recon_epochs=config.recon_epochs,
      implicit_weight=config.loss_weight(), aggregator=config)
  sgd = tff.learning.optimizers.build_sgdm
  reference = tff.learning.algorithms.build_fed_recon(
      model_fn=model_fn, loss_fn=model_lib.loss_fn(config.loss_weight()),
      metrics_fn=functools.partial(model_lib.metrics_fn, implicit=True),
      server_optimizer_fn=sgd(learning_rate=config.effective_server_lr()),
      client_optimizer_fn=sgd(learning_rate=config.client_lr),
      reconstruction_optimizer_fn=sgd(learning_rate=config.recon_lr),
      dataset_split_fn=algorithms.training_split_fn(recon_epochs=config.recon_epochs),
      model_aggregator_factory=aggregation.build_aggregator(config, weighted=True),
      metrics_aggregator=aggregation.metrics_aggregator(config))
  data_fn = clients.training_data_fn(
      tiny_split.train, batch_size=config.examples_per_batch(), seed=0,
      num_items=tiny_split.num_items, negatives_per_rating=config.negatives())
  ids = clients.client_ids(tiny_split.train)[:5]
  results = []
  for process in (ours, reference):
    state = process.initialize()
    for round_num in (1, 2):
      output = process.next(state, data_fn(ids, round_num))
      state = output.state
    results.append((list(process.get_model_weights(state).trainable),
                    output.metrics['client_work']['train']))
  (weights, metrics), (ref_weights, ref_metrics) = results
  for ours_w, ref_w in zip(weights, ref_weights):
    np.testing.assert_allclose(ours_w, ref_w, atol=1e-5)
  # ...and the rounds did move them.
  assert any(np.abs(np.asarray(w) - np.asarray(v)).max() > 1e-3
             for w, v in zip(weights, list(ours.get_model_weights(ours.initialize()).trainable)))
  assert list(metrics) == list(ref_metrics)
  for name in metrics:
    assert metrics[name] == pytest.approx(ref_metrics[name], rel=1e-5)


def test_uniform_client_weighting_is_the_plain_mean_of_the_users_updates(tiny_split):
  # --client_weighting=uniform: every sampled user's item update counts once
  # (server SGD at step 1 is then the mean of the one-user rounds' weights),
  # while the default weights it by the user's examples; no weight is sent;
  # implicit_uniform does the one for the implicit head, the other for the rest.
  import dataclasses

  import numpy as np

  from tff_rec import clients
  config = helpers.tiny_config(server_lr=1.0)
  data_fn = clients.training_data_fn(
      tiny_split.train, batch_size=config.examples_per_batch(), seed=0,
      num_items=tiny_split.num_items, negatives_per_rating=config.negatives())
  ids = clients.client_ids(tiny_split.train)
  counts = tiny_split.train.counts()
  # Two users with different numbers of ratings.
  a, b = 0, int(np.flatnonzero(counts != counts[0])[0])

  def one_round(process, users):
    state = process.next(process.initialize(), data_fn([ids[k] for k in users], 1)).state
    return [np.asarray(w) for w in process.get_model_weights(state).trainable]

  process = {weighting: algorithms.build_process(
      tiny_split, dataclasses.replace(config, client_weighting=weighting))[0]
             for weighting in ('uniform', 'examples', 'implicit_uniform')}
  alone = [one_round(process['uniform'], [k]) for k in (a, b)]
  uniform = one_round(process['uniform'], [a, b])
  for both, wa, wb in zip(uniform, *alone):
    np.testing.assert_allclose(both, (wa + wb) / 2, atol=1e-5)
  examples = one_round(process['examples'], [a, b])
  assert max(np.abs(e - u).max() for e, u in zip(examples, uniform)) > 1e-4
  # implicit_uniform: the rating head (item factors, biases, offset) as by
  # examples, the implicit head's two tensors as uniform.
  per_head = one_round(process['implicit_uniform'], [a, b])
  for mixed, expected in zip(per_head, examples[:3] + uniform[3:]):
    np.testing.assert_allclose(mixed, expected, atol=1e-5)
  assert algorithms.wire(dataclasses.replace(config, client_weighting='uniform')).weighted is False
  assert algorithms.wire(config).weighted is True
  assert algorithms.wire(dataclasses.replace(config, client_weighting='implicit_uniform')).weighted

"""The federated learning processes: Federated Reconstruction and the FedAvg comparison.

Federated Reconstruction (Singhal et al. 2021): each round the server
broadcasts the global item parameters; each sampled client (1) rebuilds its
user parameters (both heads, `model.py`) from zero on its own examples (its
ratings and the unrated items it sampled) with the item parameters frozen,
(2) trains the item parameters with its user parameters frozen, and (3) sends
only the item-parameter delta. User parameters never leave the device and are
not kept between rounds. The server averages the deltas (weighted by the
client's examples) through `tff_common.aggregation` and applies them with its
optimizer. The client update is TFF's FedRecon update written as loops in one
graph per client (`_reconstruction_client_work`), which TFF's worker runs
several times cheaper than TFF's own (bench/rec_round_cost.py).

FedAvg over a global user table is here for comparison only: every user's
row is part of the broadcast model and of every client's update, so the
server receives (and keeps) every participating user's parameters.
"""

import collections
import functools
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_common import aggregation
from tff_common import communication
from tff_common import dp
from tff_rec import config as config_lib
from tff_rec import model as model_lib


def _is_test_batch(batch) -> tf.Tensor:
  return tf.reduce_any(batch['x']['is_test'])


def training_split_fn(*, recon_epochs: int):
  """Reconstruct on `recon_epochs` passes over the user's ratings, then train on one."""
  def split(dataset):
    return dataset.repeat(recon_epochs), dataset
  return split


def evaluation_split_fn(*, recon_epochs: int):
  """Reconstruct on the user's train batches, score the test batches."""
  def split(dataset):
    recon = dataset.filter(lambda b: tf.logical_not(_is_test_batch(b)))
    return recon.repeat(recon_epochs), dataset.filter(_is_test_batch)
  return split


def _no_data_rewrites(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """`dataset` without tf.data's graph rewrites and autotuning: a client's
  dataset is a few small batches, and rewriting its graph (done again for
  every iterator) cost more than iterating it."""
  options = tf.data.Options()
  options.experimental_optimization.apply_default_optimizations = False
  options.autotune.enabled = False
  return dataset.with_options(options)


def _sgd_step(variables, gradients, learning_rate):
  """One plain SGD step (`build_sgdm` without momentum: w - lr * g). A row
  gradient (an embedding's `IndexedSlices`) updates only the batch's rows,
  which is the same arithmetic: every other row's gradient is zero."""
  for variable, gradient in zip(variables, gradients):
    if gradient is None:
      continue
    if isinstance(gradient, tf.IndexedSlices):
      variable.scatter_sub(tf.IndexedSlices(learning_rate * gradient.values, gradient.indices,
                                            gradient.dense_shape))
    else:
      variable.assign_sub(learning_rate * gradient)


def _non_finite_to_zero(delta):
  """(delta, 0), or (zeros, 1) if any entry is not finite (TFF's rule)."""
  finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tf.nest.flatten(delta)])
  return tf.cond(finite, lambda: (delta, tf.constant(0)),
                 lambda: (tf.nest.map_structure(tf.zeros_like, delta), tf.constant(1)))


def _reconstruction_client_work(*, model_fn, weights_type, loss_fn, metrics_fn, client_lr: float,
                                recon_lr: float, recon_epochs: int, uniform: bool,
                                metrics_aggregator) -> tff.learning.templates.ClientWorkProcess:
  """FedRecon's client work (TFF's `fed_recon` client update), one graph per client.

  The same steps as TFF's: load the broadcast G, rebuild the local user
  parameters from zero by SGD at `recon_lr` over `recon_epochs` passes (G
  frozen), then one pass of SGD at `client_lr` on G (user parameters frozen)
  with the metrics updated on those batches, and return the delta of G (zeros
  and weight 0 if not finite) weighted by the examples trained on (or 1 with
  `uniform`). TFF's version drives each pass with `Dataset.reduce`, whose
  step function TensorFlow instantiates and optimizes again for every client
  every round; here the passes are loops of the client's one function, so
  the worker prepares it once (bench/rec_round_cost.py: a round several times
  cheaper, same batches, same updates up to float rounding).

  Federated type: `next: (<state=()@SERVER, weights=G@CLIENTS, data={B*}@CLIENTS>
  -> <state=()@SERVER, result=<update=dG, update_weight=float32>@CLIENTS,
  measurements=<train=M>@SERVER>)`.
  """
  with tf.Graph().as_default():
    input_spec = model_fn().input_spec
  dataset_type = tff.SequenceType(tff.types.tensorflow_to_type(input_spec))
  split = training_split_fn(recon_epochs=recon_epochs)
  finalizers = collections.OrderedDict()  # filled while tracing client_update

  @tff.tensorflow.computation(weights_type, dataset_type)
  @tf.function
  def client_update(initial_weights, dataset):
    with tf.init_scope():
      model = model_fn()
      metrics = ([] if metrics_fn is None else metrics_fn()) + [
          tf.keras.metrics.MeanMetricWrapper(loss_fn(), name='loss')]
      for metric in metrics:
        finalizers[metric.name] = tff.learning.metrics.create_keras_metric_finalizer(metric)
      loss = loss_fn()
    global_weights = tff.learning.models.ReconstructionModel.get_global_variables(model)
    local_weights = tff.learning.models.ReconstructionModel.get_local_variables(model)
    tf.nest.map_structure(lambda v, w: v.assign(w), global_weights, initial_weights)

    def step(variables, learning_rate, batch):
      with tf.GradientTape() as tape:
        output = model.forward_pass(batch, training=True)
        batch_loss = loss(y_true=output.labels, y_pred=output.predictions)
      _sgd_step(variables, tape.gradient(batch_loss, variables), learning_rate)
      return output

    recon_data, train_data = split(_no_data_rewrites(dataset))
    for batch in iter(recon_data):
      step(list(local_weights.trainable), recon_lr, batch)
    examples = tf.constant(0)
    for batch in iter(train_data):
      output = step(list(global_weights.trainable), client_lr, batch)
      for metric in metrics:
        metric.update_state(y_true=output.labels, y_pred=output.predictions)
      examples += output.num_examples
    delta, non_finite = _non_finite_to_zero(tf.nest.map_structure(
        tf.subtract, initial_weights.trainable, global_weights.trainable))
    weight = tf.constant(1.0) if uniform else tf.cast(examples, tf.float32)
    weight = tf.where(non_finite > 0, 0.0, weight)
    return (tff.learning.templates.ClientResult(update=delta, update_weight=weight),
            tff.learning.models.ReconstructionModel.read_metric_variables(metrics))

  @tff.federated_computation
  def initialize():
    return tff.federated_value((), tff.SERVER)

  @tff.federated_computation(tff.FederatedType((), tff.SERVER),
                             tff.FederatedType(weights_type, tff.CLIENTS),
                             tff.FederatedType(dataset_type, tff.CLIENTS))
  def next_fn(state, weights, client_data):
    del state
    result, unfinalized = tff.federated_map(client_update, (weights, client_data))
    aggregate = metrics_aggregator(finalizers, unfinalized.type_signature.member)
    return tff.templates.MeasuredProcessOutput(
        state=tff.federated_value((), tff.SERVER), result=result,
        measurements=tff.federated_zip(collections.OrderedDict(train=aggregate(unfinalized))))

  return tff.learning.templates.ClientWorkProcess(initialize, next_fn)


class _PerHeadFactory(tff.aggregators.WeightedAggregationFactory):
  """Aggregates the rating head's item parameters (and the offset) with one
  weighted factory and the implicit head's with another (`client_weighting=
  'implicit_uniform'`: the second ignores the weights, so every user counts
  once there).

  Federated type of the created process's `next`: `(<state=<S_r, S_i>@SERVER,
  value={G}@CLIENTS, weight={float32}@CLIENTS> -> <state=<S_r, S_i>@SERVER,
  result=G@SERVER, measurements=<rating=M_r, implicit=M_i>@SERVER>)`: each
  factory sees only its own tensors of G; the result is G's order again.
  """

  def __init__(self, *, implicit_positions, rating_factory, implicit_factory):
    self._implicit = tuple(implicit_positions)
    self._factories = (rating_factory, implicit_factory)

  def create(self, value_type, weight_type):
    members = [member for _, member in tff.structure.iter_elements(value_type)]
    parts = ([k for k in range(len(members)) if k not in self._implicit], list(self._implicit))
    part_types = [tff.StructWithPythonType([members[k] for k in part], list) for part in parts]
    processes = [f.create(t, weight_type) for f, t in zip(self._factories, part_types)]
    order = [k for part in parts for k in part]

    @tff.tensorflow.computation(value_type)
    def rating_part(value):
      return [value[k] for k in parts[0]]

    @tff.tensorflow.computation(value_type)
    def implicit_part(value):
      return [value[k] for k in parts[1]]

    @tff.tensorflow.computation(part_types[0], part_types[1])
    def merge(rating, implicit):
      flat = list(rating) + list(implicit)
      return [flat[order.index(k)] for k in range(len(members))]

    @tff.federated_computation
    def initialize():
      return tff.federated_zip(tuple(p.initialize() for p in processes))

    @tff.federated_computation(initialize.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS),
                               tff.FederatedType(weight_type, tff.CLIENTS))
    def next_fn(state, value, weight):
      outputs = [process.next(state[k], tff.federated_map(select, value), weight)
                 for k, (process, select) in enumerate(zip(processes,
                                                           (rating_part, implicit_part)))]
      result = tff.federated_map(merge, tff.federated_zip(tuple(o.result for o in outputs)))
      return tff.templates.MeasuredProcessOutput(
          state=tff.federated_zip(tuple(o.state for o in outputs)), result=result,
          measurements=tff.federated_zip(collections.OrderedDict(
              rating=outputs[0].measurements, implicit=outputs[1].measurements)))

    return tff.templates.AggregationProcess(initialize, next_fn)


def build_fed_recon(*, model_fn, client_lr: float, server_lr: float, recon_lr: float,
                    recon_epochs: int, implicit_weight: float = 0.0,
                    aggregator: aggregation.AggregatorConfig = aggregation.MEAN,
                    client_weighting: str = config_lib.EXAMPLES,
                    dp_aggregator=None, client_model_fn=None) -> tff.learning.templates.LearningProcess:
  """Federated Reconstruction for the two-head MF model: TFF's
  `build_fed_recon` with plain SGD on the clients, composed from TFF's parts
  (broadcast, aggregator, server SGD) around `_reconstruction_client_work`.

  Federated types, with `G` the global weights (item factors and biases of
  both heads, the offset), `S` the server state holding them, and `B` a batch
  of one user's examples (`model.recon_input_spec`):

    initialize: ( -> S@SERVER)
    next:       (<state=S@SERVER, client_data={B*}@CLIENTS>
                 -> <state=S@SERVER, metrics=M@SERVER>)

  In `next` the server broadcasts G; each user (CLIENTS) rebuilds its local
  user parameters from zero over `recon_epochs` passes (G frozen), then
  trains G one pass (user parameters frozen) and returns the delta of G
  weighted by its example count (`client_weighting='examples'`) or counting
  once (`'uniform'`: every user's delta weighs 1/K, so heavy raters do not
  dominate the item parameters; `'implicit_uniform'`: the implicit head's
  part once, the rating head's by examples, `_PerHeadFactory`); the aggregator (`tff_common.aggregation`)
  sums the deltas to the SERVER, whose SGD at `server_lr` steps G. The local
  parameters never leave the client and are not kept between rounds.

  With `dp_aggregator` (`tff_common.dp.build_dp_aggregator`), user-level DP:
  each client's delta is clipped and counts once (uniform weighting, as the
  DP mean requires), the server adds the noise, and the clients' training
  metrics are not sent at all (the noise protects the update, not them).

  `client_model_fn` (default `model_fn`) builds the clients' model: G is
  overwritten by the broadcast before use, so its initial values there do
  not matter; only `model_fn` gives the server's initial G.
  """

  @tff.tensorflow.computation
  def initial_weights():
    return tff.learning.models.ReconstructionModel.get_global_variables(model_fn())

  weights_type = initial_weights.type_signature.result
  uniform = dp_aggregator is not None or client_weighting == config_lib.UNIFORM
  if dp_aggregator is not None:
    factory = tff.aggregators.as_weighted_aggregator(dp_aggregator)
    metrics_aggregator = aggregation.metrics_aggregator(aggregator, release=False)
  else:
    # Uniform: the aggregator's unweighted mean behind the weighted API (the
    # constant weight the clients return is ignored, and not sent).
    factory = (aggregation.build_aggregator(aggregator, weighted=False, ignore_weights=True)
               if uniform else aggregation.build_aggregator(aggregator, weighted=True))
    if client_weighting == config_lib.IMPLICIT_UNIFORM and implicit_weight > 0:
      factory = _PerHeadFactory(
          implicit_positions=[k for k, name in enumerate(model_lib.global_names(True))
                              if name in (model_lib.IMPLICIT_ITEM_FACTORS,
                                          model_lib.IMPLICIT_ITEM_BIAS)],
          rating_factory=factory,
          implicit_factory=aggregation.build_aggregator(aggregator, weighted=False,
                                                        ignore_weights=True))
    metrics_aggregator = aggregation.metrics_aggregator(aggregator)
  client_work = _reconstruction_client_work(
      model_fn=client_model_fn or model_fn, weights_type=weights_type,
      loss_fn=model_lib.loss_fn(implicit_weight),
      metrics_fn=(None if dp_aggregator is not None else
                  functools.partial(model_lib.metrics_fn, implicit=implicit_weight > 0)),
      client_lr=client_lr, recon_lr=recon_lr, recon_epochs=recon_epochs,
      uniform=uniform, metrics_aggregator=metrics_aggregator)
  return tff.learning.templates.compose_learning_process(
      initial_model_weights_fn=initial_weights,
      model_weights_distributor=tff.learning.templates.build_broadcast_process(weights_type),
      client_work=client_work,
      model_update_aggregator=factory.create(weights_type.trainable,
                                             tff.TensorType(np.float32)),
      model_finalizer=tff.learning.templates.build_apply_optimizer_finalizer(
          tff.learning.optimizers.build_sgdm(learning_rate=server_lr), weights_type))


def build_fed_recon_eval(*, model_fn, recon_lr: float, recon_epochs: int,
                         implicit_weight: float = 0.0) -> tff.learning.templates.LearningProcess:
  """TFF's evaluation of a reconstruction model: same types as `build_fed_recon`.

  In `next` the server broadcasts G (set with `set_model_weights`); each user
  rebuilds its parameters from its train batches (`is_test` false), scores
  its test batches and returns only metric sums, which the SERVER finalizes
  into M (RMSE, MAE, and with the implicit head the rated loss). G is not
  changed.
  """
  return tff.learning.algorithms.build_fed_recon_eval(
      model_fn=model_fn,
      loss_fn=model_lib.loss_fn(implicit_weight),
      metrics_fn=functools.partial(model_lib.metrics_fn, implicit=implicit_weight > 0),
      reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=recon_lr),
      dataset_split_fn=evaluation_split_fn(recon_epochs=recon_epochs))


def build_fed_avg(*, model_fn, client_lr: float, server_lr: float,
                  aggregator: aggregation.AggregatorConfig = aggregation.MEAN
                  ) -> tff.learning.templates.LearningProcess:
  """TFF's example-weighted FedAvg over the whole model, user tables included.

  Federated types as in `build_fed_recon`, with `G` every weight of the model
  (`model.global_input_spec` batches name their user row): the server
  broadcasts G, each user trains all of it locally and returns its delta, so
  the server receives every participating user's parameters. A comparison,
  not a deployment.
  """
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=client_lr),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=server_lr),
      model_aggregator=aggregation.build_aggregator(aggregator, weighted=True),
      metrics_aggregator=aggregation.metrics_aggregator(aggregator))


def trainable_weights(process: tff.learning.templates.LearningProcess, state: Any) -> list:
  """The global trainable weights in `state`, as a list of arrays."""
  return list(process.get_model_weights(state).trainable)


def build_process(split, config: config_lib.TrainConfig, *, noise_multiplier: float = 0.0):
  """The learning process of `config.algorithm` on `split`, and the layer name
  of each of its trainable weights (for `params.from_weights`).

  Under differential privacy (`config.dp_enabled`), `noise_multiplier` is the
  resolved one (`tff_common.dp.client_level_guarantee`: calibrated when the
  config gives a target epsilon)."""
  common = config.model_kwargs(split)
  if config.algorithm == 'fedrecon':
    dp_aggregator = None
    if config.dp_enabled:
      dp_aggregator = dp.build_dp_aggregator(
          noise_multiplier=noise_multiplier, clip=config.dp_clip,
          clients_per_round=min(config.clients_per_round or len(split.train), len(split.train)),
          aggregator=config, seed=config.seed, adaptive_quantile=config.dp_adaptive_quantile,
          adaptive_lr=config.dp_adaptive_lr)
    process = build_fed_recon(
        model_fn=model_lib.reconstruction_model_fn(**common),
        client_model_fn=model_lib.reconstruction_model_fn(**common, random_init=False),
        client_lr=config.client_lr, server_lr=config.effective_server_lr(),
        recon_lr=config.recon_lr, recon_epochs=config.recon_epochs,
        implicit_weight=config.loss_weight(), aggregator=config,
        client_weighting=config.client_weighting, dp_aggregator=dp_aggregator)
    return process, list(model_lib.global_names(config.implicit))
  if config.algorithm == 'fedavg':
    process = build_fed_avg(
        model_fn=model_lib.global_model_fn(num_users=len(split.train),
                                           implicit_weight=config.loss_weight(), **common),
        client_lr=config.client_lr, server_lr=config.effective_server_lr(),
        aggregator=config)
    keras_model = model_lib.build_keras_model(num_users=len(split.train),
                                              with_user_input=True, **common)
    return process, model_lib.variable_layers(keras_model)
  raise ValueError(f'{config.algorithm!r} is not a federated algorithm')


def build_eval_process(split, config: config_lib.TrainConfig):
  """`build_fed_recon_eval` for a model trained with `config` on `split`."""
  return build_fed_recon_eval(
      model_fn=model_lib.reconstruction_model_fn(**config.model_kwargs(split)),
      recon_lr=config.recon_lr, recon_epochs=config.recon_epochs,
      implicit_weight=config.loss_weight())


def wire(config: config_lib.TrainConfig) -> communication.Wire:
  """The encoding of the messages of `build_process(split, config)`: both
  processes weight each client's update by its example count, except under
  differential privacy or FedRecon's uniform client weighting (no weight is sent)."""
  uniform = config.dp_enabled or (config.algorithm == 'fedrecon' and
                                  config.client_weighting == config_lib.UNIFORM)
  return communication.Wire(aggregator=config, weighted=not uniform)

"""FedAvg's client work on tensors of padded batches, not on tf.data datasets.

TFF's learning processes take each client's data as a sequence (a tf.data
dataset), and the C++ runtime charges a fixed cost per client for that: the
dataset's graph, its rows inside, is serialized by the orchestrator and
rebuilt on the worker (bench/credit_round_cost.py: ~20-25 ms of worker CPU per
bank, whatever its rows). Here a bank's data is three tensors instead,

  D = <x=float32[steps, batch, d], y=float32[steps, batch, 1], mask=float32[steps, batch]>

its round's batches one after another, the last one zero-padded and `mask`
marking the real rows (`client_data`). The orchestrator builds them with the
seeded shuffle of the dataset path (`shuffled_rows`), so both paths train on
the same batches and compute the same update. The client work is TFF's
`build_model_delta_client_work` (and, with a proximal strength, the FedProx
one of `proximal_client_work`) with its dataset reduce replaced by a
`tf.while_loop` over the steps; the process is composed from TFF's broadcast
distributor, the given aggregator and TFF's apply-optimizer finalizer, as
TFF's `build_weighted_fed_avg` does, and has the same state, so checkpoints,
`get_model_weights`/`set_model_weights` and the federated evaluator work
unchanged. TFF's composer itself insists on sequences, so the few lines
composing the parts are written here (`build_process`).
"""

import collections
from collections.abc import Callable
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff


def data_type(num_features: int) -> tff.StructWithPythonType:
  """D, one bank's client data; `steps` and `batch` vary between banks and rounds."""
  return tff.StructWithPythonType(
      [('x', tff.TensorType(np.float32, [None, None, num_features])),
       ('y', tff.TensorType(np.float32, [None, None, 1])),
       ('mask', tff.TensorType(np.float32, [None, None]))],
      collections.OrderedDict)


def build_client_work(model_fn: Callable[[], tff.learning.models.VariableModel], *,
                      learning_rate: float, weighting: tff.learning.ClientWeighting,
                      proximal_strength: float = 0.0,
                      metrics_aggregator=None) -> tff.templates.MeasuredProcess:
  """Local SGD on D, as TFF's model-delta client work does on a dataset.

  Federated type, with `W` the model weights and `H` = <learning_rate=float32>
  (the state of TFF's own FedAvg client work, so the process state is the same):

    initialize: ( -> H@SERVER)
    next:       (<H@SERVER, W@CLIENTS, D@CLIENTS>
                 -> <state=H@SERVER, result=<update, update_weight>@CLIENTS,
                     measurements=<train=M>@SERVER>)

  On each bank (CLIENTS): for every step, the model's loss on that batch's
  real rows (`mask` > 0; the model's `forward_pass`, so an L2 penalty of the
  Keras model counts as in the dataset path), its gradient plus
  `proximal_strength * (w - w_global)` (FedProx), one SGD step. The update is
  `w_global - w_trained` (TFF's sign), weighted by the rows trained on
  (NUM_EXAMPLES) or 1 (UNIFORM); a non-finite update is zeroed with weight 0
  and its metrics dropped, as TFF does. The training metrics M go through
  `metrics_aggregator` (TFF's `sum_then_finalize` if None) to the SERVER.
  """
  if not learning_rate > 0:
    raise ValueError(f'learning_rate must be > 0, got {learning_rate}')
  if not proximal_strength >= 0:
    raise ValueError(f'proximal_strength must be >= 0, got {proximal_strength}')
  if metrics_aggregator is None:
    metrics_aggregator = tff.learning.metrics.sum_then_finalize
  with tf.Graph().as_default():
    # Built in a throwaway graph only for its types and metric finalizers.
    model = model_fn()
    metrics_aggregation_fn = metrics_aggregator(model.metric_finalizers())
  weights_type = tff.learning.models.weights_type_from_model(model)
  num_features = model.input_spec[0].shape[-1]
  hparams = collections.OrderedDict(learning_rate=np.float32(learning_rate))

  @tff.federated_computation
  def init_fn():
    return tff.federated_value(hparams, tff.SERVER)

  state_type = init_fn.type_signature.result.member

  @tff.tensorflow.computation(state_type, weights_type, data_type(num_features))
  def client_update(state, initial_weights, data):
    return _client_update_fn(model_fn(), weighting=weighting,
                             proximal_strength=proximal_strength)(
                                 state['learning_rate'], initial_weights, data)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.CLIENTS),
                             tff.FederatedType(data_type(num_features), tff.CLIENTS))
  def next_fn(state, weights, client_data):
    result, model_outputs = tff.federated_map(
        client_update, (tff.federated_broadcast(state), weights, client_data))
    train = metrics_aggregation_fn(model_outputs)
    return tff.templates.MeasuredProcessOutput(
        state, result, tff.federated_zip(collections.OrderedDict(train=train)))

  return tff.templates.MeasuredProcess(init_fn, next_fn)


def _client_update_fn(model, *, weighting, proximal_strength: float):
  """The client step of `build_client_work` as a `tf.function` of `(learning
  rate, initial weights, data)`; a tf.function so that reading the trained
  weights is ordered after the loop's assignments."""

  @tf.function
  def client_update(learning_rate, initial_weights, data):
    model_weights = tff.learning.models.ModelWeights.from_model(model)
    tf.nest.map_structure(lambda v, t: v.assign(t), model_weights, initial_weights)
    trainable = tf.nest.flatten(model_weights.trainable)
    anchor = tf.nest.flatten(initial_weights.trainable)
    num_examples = tf.constant(0, tf.int64)
    # A loop over the steps (AutoGraph: one tf.while_loop), the batches in order.
    for i in tf.range(tf.shape(data['mask'])[0]):
      real = data['mask'][i] > 0
      batch = (tf.boolean_mask(data['x'][i], real), tf.boolean_mask(data['y'][i], real))
      with tf.GradientTape() as tape:
        output = model.forward_pass(batch, training=True)
      gradients = tape.gradient(output.loss, trainable)
      for variable, gradient, start in zip(trainable, gradients, anchor, strict=True):
        if proximal_strength > 0:
          gradient = gradient + proximal_strength * (variable - start)
        variable.assign_sub(learning_rate * gradient)
      num_examples += tf.shape(batch[0], out_type=tf.int64)[0]
    update = tf.nest.map_structure(tf.subtract, initial_weights.trainable,
                                   model_weights.trainable)
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(u)) for u in tf.nest.flatten(update)])
    if weighting == tff.learning.ClientWeighting.NUM_EXAMPLES:
      weight = tf.cast(num_examples, tf.float32)
    else:
      weight = tf.constant(1.0)
    # As TFF: a non-finite update is sent as zeros with weight 0, and its
    # (non-finite) metrics are not reported.
    if not finite:
      update = tf.nest.map_structure(tf.zeros_like, update)
      weight = tf.constant(0.0)
      model.reset_metrics()
    return (tff.learning.templates.ClientResult(update=update, update_weight=weight),
            model.report_local_unfinalized_metrics())

  return client_update


def build_process(model_fn: Callable[[], tff.learning.models.VariableModel], *,
                  client_lr: float, server_optimizer, model_aggregator,
                  weighting: tff.learning.ClientWeighting, proximal_strength: float = 0.0,
                  metrics_aggregator=None) -> tff.learning.templates.LearningProcess:
  """FedAvg (FedProx with `proximal_strength` > 0) whose banks' data are tensors.

  Federated types, with `W` the model weights, `S` the server state
  (`tff.learning.templates.LearningAlgorithmState`, as TFF's FedAvg: W, the
  distributor's, client work's, aggregator's and finalizer's states) and D a
  bank's padded batches (`data_type`):

    initialize: ( -> S@SERVER)
    next:       (<state=S@SERVER, client_data={D}@CLIENTS>
                 -> <state=S@SERVER, metrics=M@SERVER>)

  In `next`, the server broadcasts W (TFF's broadcast distributor); each bank
  (CLIENTS) runs local SGD over its batches (`build_client_work`) and returns
  its update and weight; `model_aggregator` brings them to the SERVER (a
  weighted factory; wrap an unweighted one in `tff.aggregators.
  as_weighted_aggregator`), where TFF's apply-optimizer finalizer steps W with
  `server_optimizer`. M = <distributor, client_work=<train=...>, aggregator,
  finalizer>, as TFF's processes report it.
  """

  @tff.tensorflow.computation
  def initial_model_weights_fn():
    return tff.learning.models.ModelWeights.from_model(model_fn())

  weights_type = initial_model_weights_fn.type_signature.result
  distributor = tff.learning.templates.build_broadcast_process(weights_type)
  client_work = build_client_work(model_fn, learning_rate=client_lr, weighting=weighting,
                                  proximal_strength=proximal_strength,
                                  metrics_aggregator=metrics_aggregator)
  aggregator = model_aggregator.create(weights_type.trainable, tff.TensorType(np.float32))
  finalizer = tff.learning.templates.build_apply_optimizer_finalizer(server_optimizer,
                                                                     weights_type)
  state_of = tff.learning.templates.LearningAlgorithmState

  @tff.federated_computation
  def init_fn():
    return tff.federated_zip(state_of(
        tff.federated_eval(initial_model_weights_fn, tff.SERVER), distributor.initialize(),
        client_work.initialize(), aggregator.initialize(), finalizer.initialize()))

  num_features = client_work.next.type_signature.parameter[2].member.x.shape[-1]

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(data_type(num_features), tff.CLIENTS))
  def next_fn(state, client_data):
    # What TFF's `compose_learning_process` does, which accepts sequences only.
    sent = distributor.next(state.distributor, state.global_model_weights)
    trained = client_work.next(state.client_work, sent.result, client_data)
    aggregated = aggregator.next(state.aggregator, trained.result.update,
                                 trained.result.update_weight)
    finalized = finalizer.next(state.finalizer, state.global_model_weights, aggregated.result)
    new_state = tff.federated_zip(state_of(finalized.result, sent.state, trained.state,
                                           aggregated.state, finalized.state))
    metrics = tff.federated_zip(collections.OrderedDict(
        distributor=sent.measurements, client_work=trained.measurements,
        aggregator=aggregated.measurements, finalizer=finalized.measurements))
    return tff.learning.templates.LearningProcessOutput(new_state, metrics)

  state_type = init_fn.type_signature.result.member

  @tff.tensorflow.computation(state_type)
  def get_model_weights(state):
    return state.global_model_weights

  @tff.tensorflow.computation(state_type, state_type.global_model_weights)
  def set_model_weights(state, model_weights):
    return state_of(model_weights, state.distributor, state.client_work, state.aggregator,
                    state.finalizer)

  return tff.learning.templates.LearningProcess(init_fn, next_fn, get_model_weights,
                                                set_model_weights)


# Orchestrator side: one bank's data for one round.


def shuffled_rows(rows: int, *, seed: int, local_epochs: int) -> np.ndarray:
  """The order in which the dataset path's `dataset.shuffle(rows, seed=seed,
  reshuffle_each_iteration=True).repeat(local_epochs)` yields a bank's rows,
  epochs one after another.

  tf.data's shuffle draws its order from its seeds and the number of elements
  only, so shuffling the row numbers gives that order, under the TF global
  seed of the moment (`open_run` sets it before any round's data is built).
  Eager, one element (`get_single_element`: ~0.5 ms a bank, where iterating
  costs several).
  """
  return (tf.data.Dataset.range(rows)
          .shuffle(rows, seed=seed, reshuffle_each_iteration=True)
          .repeat(local_epochs).batch(rows * local_epochs).get_single_element().numpy())


def client_data(x: np.ndarray, y: np.ndarray, *, order: Sequence[int],
                batch_size: int) -> collections.OrderedDict:
  """D: the rows `x[order]`, `y[order]` cut into batches of `batch_size`, the
  last one zero-padded, and the mask of real rows.

  Args:
    x: The bank's features, float32 [rows, d].
    y: Its labels, [rows] or [rows, 1].
    order: Row indices in training order (e.g. `shuffled_rows`), repeats allowed.
    batch_size: Rows per batch, >= 1.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  order = np.asarray(order, np.int64)
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.float32).reshape(len(x), 1)
  steps = -(-len(order) // batch_size)
  size = steps * batch_size
  xs = np.zeros((size, x.shape[1]), np.float32)
  ys = np.zeros((size, 1), np.float32)
  mask = np.zeros(size, np.float32)
  xs[:len(order)], ys[:len(order)], mask[:len(order)] = x[order], y[order], 1.0
  return collections.OrderedDict(x=xs.reshape(steps, batch_size, -1),
                                 y=ys.reshape(steps, batch_size, 1),
                                 mask=mask.reshape(steps, batch_size))


def rows_type(num_features: int) -> tff.StructWithPythonType:
  """One bank's rows for evaluation: <x=float32[rows, d], y=float32[rows, 1]>."""
  return tff.StructWithPythonType(
      [('x', tff.TensorType(np.float32, [None, num_features])),
       ('y', tff.TensorType(np.float32, [None, 1]))],
      collections.OrderedDict)


def build_evaluation(model_fn: Callable[[], tff.learning.models.VariableModel]):
  """The model's metrics over every bank's rows, as TFF's `build_fed_eval`
  computes them, with each bank's rows one tensor instead of a dataset.

  Federated type, with `W` the model weights and M the model's finalized
  metrics (e.g. auc, log_loss, loss, num_examples):

    (<W@SERVER, {<x=float32[?, d], y=float32[?, 1]>}@CLIENTS> -> M@SERVER)

  The server broadcasts W; each bank (CLIENTS) runs the model's
  `forward_pass` on its rows and returns its unfinalized metrics (sums, e.g.
  AUC's confusion counts); `tff.learning.metrics.sum_then_finalize` sums them
  to the SERVER and finalizes them.
  """
  with tf.Graph().as_default():
    model = model_fn()
    aggregate = tff.learning.metrics.sum_then_finalize(model.metric_finalizers())
  weights_type = tff.learning.models.weights_type_from_model(model)
  num_features = model.input_spec[0].shape[-1]

  @tff.tensorflow.computation(weights_type, rows_type(num_features))
  def score(weights, rows):
    model = model_fn()

    @tf.function
    def run(weights, rows):
      tf.nest.map_structure(lambda v, t: v.assign(t),
                            tff.learning.models.ModelWeights.from_model(model), weights)
      model.forward_pass((rows['x'], rows['y']), training=False)
      return model.report_local_unfinalized_metrics()

    return run(weights, rows)

  @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER),
                             tff.FederatedType(rows_type(num_features), tff.CLIENTS))
  def evaluate(weights, rows):
    return aggregate(tff.federated_map(score, (tff.federated_broadcast(weights), rows)))

  return evaluate

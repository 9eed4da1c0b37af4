"""Customer-level differential privacy: DP-SGD inside each bank, as TFF client work.

Each bank trains on Poisson-sampled batches of its own rows. Per step, every
example's gradient is clipped to L2 norm C over all trainable weights jointly,
the clipped gradients are summed, Gaussian noise N(0, (z·C)²) is added to every
coordinate, and the sum is divided by the expected batch size B (not by the
realized one, which is private; an empty batch still adds noise) before an SGD
step (Abadi et al. 2016). The bank's model delta is then aggregated like any
other update. Where it runs:

  orchestrator  `sampling_rate`, `steps_per_round`, `poisson_sample` and
                `client_data` build one bank's round: `steps` batches, each
                row in a batch independently with probability q = B / rows,
                and the seed of the noise, all a pure function of one integer
                seed (the credit job passes
                `tff_common.seeding.client_seed(run seed, round, bank)`, so a
                resumed run replays the same batches and the same noise);
                `client_data_of` packs given batches (tests, other samplers).
  clients       `build_client_work`: the DP-SGD steps above.
  server        the aggregator given to `build_process` and TFF's
                `build_apply_optimizer_finalizer` with server SGD.

The accounting (ε per bank, composed over rounds × local steps at that bank's
q) lives next to the program (`tff_common`); it needs z, q and the number of
steps, which are those given here. It treats a bank's row count as public: q,
the number of steps and the client weight are computed from it.

The noise seed reaches the bank through its data, because a TFF computation
cannot know its round or client. In this simulation the orchestrator derives it
from the run's seed, so whoever knows that seed (config.json) can remove the
noise: the guarantee is against the server and the released model, not against
the person who ran the simulation. A deployed bank would draw its seed from its
own secure randomness.
"""

import collections
from collections.abc import Callable
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

# The stateless generator, named rather than 'auto_select', so that the noise of
# a seed does not depend on the device that draws it.
_RNG_ALG = 'philox'
_MAX_SEED = 2**63 - 1


def standard_noise(seed, step, size: int) -> tf.Tensor:
  """The N(0, 1) draws of one local step: float32[size], a pure function of
  `(seed int64[2], step)`. The client work scales them by z·C; tests feed the
  same draws to the NumPy twin (`numpy_fl.dp_sgd`)."""
  step_seed = tf.random.experimental.stateless_fold_in(
      tf.cast(seed, tf.int64), tf.cast(step, tf.int64), alg=_RNG_ALG)
  return tf.random.stateless_normal([size], seed=step_seed, alg=_RNG_ALG)


def build_client_work(model_fn: Callable[[], tff.learning.models.VariableModel], *,
                      learning_rate: float, l2_clip: float, noise_multiplier: float,
                      release_metrics: bool = True,
                      expected_batch_size: int) -> tff.learning.templates.ClientWorkProcess:
  """DP-SGD on each bank's Poisson-sampled batches, returning its model delta.

  Federated types, with `W` the model weights, `B` a batch of the model's
  `input_spec` and `D = <batches=B*, seed=int64[2]*>` a bank's data (the seed is
  a one-element sequence: client data must be a structure of sequences):

    initialize: ( -> <>@SERVER)
    next:       (<state=<>@SERVER, weights={W}@CLIENTS, client_data={D}@CLIENTS>
                 -> <state=<>@SERVER,
                     result={ClientResult(update=W.trainable, update_weight=float32)}@CLIENTS,
                     measurements=<train=<loss=float32, num_examples=int64>>@SERVER>)

  The state is empty: every parameter is fixed when the process is built,
  since changing one mid-run would change what the accounting composes.

  On each bank (CLIENTS), step s of its batches computes every example's
  gradient of the model's loss (`forward_pass` on a batch of that one example,
  so any `VariableModel` whose loss is a mean over its batch works), clips it to
  `l2_clip`, sums, adds `noise_multiplier * l2_clip * standard_noise(seed, s)`
  (split over the trainable weights in their order), divides by
  `expected_batch_size` and steps the weights by `learning_rate`. The update is
  `initial - trained` (TFF's sign). Its weight is `steps * expected_batch_size`,
  the number of examples the bank processes in expectation: with a weighted
  aggregator the mean is example-weighted as in the credit job's FedAvg,
  without the realized (private) Poisson count ever leaving the bank; an
  unweighted aggregator ignores it. A non-finite update is passed on as is, and
  TFF's finalizer rejects it (`update_non_finite`).

  The measurements are the mean per-example training loss over the examples
  the banks sampled, and that count, summed over banks on the SERVER. Neither
  is noised: they reveal each round's realized batch sizes and a loss computed
  on customers' rows, outside the DP guarantee.

  Args:
    model_fn: A no-argument function returning a new `tff.learning.models.VariableModel`.
    learning_rate: The banks' SGD step, > 0.
    l2_clip: C, the largest L2 norm of one example's gradient, > 0.
    noise_multiplier: z, the noise's standard deviation in units of C, >= 0
      (0: no noise, no privacy; the clipping alone).
    expected_batch_size: B, the divisor of each step's noised sum (q·rows for a
      bank sampled at rate q), an integer >= 1.
  """
  _check_positive('learning_rate', learning_rate)
  _check_positive('l2_clip', l2_clip)
  if not noise_multiplier >= 0:
    raise ValueError(f'noise_multiplier must be >= 0, got {noise_multiplier}')
  if expected_batch_size != int(expected_batch_size) or expected_batch_size < 1:
    raise ValueError(f'expected_batch_size must be an integer >= 1, got {expected_batch_size}')
  expected_batch_size = int(expected_batch_size)

  with tf.Graph().as_default():
    # Built in a throwaway graph only for its types.
    model = model_fn()
  batch_type = tff.types.tensorflow_to_type(model.input_spec)
  data_type = tff.StructWithPythonType(
      [('batches', tff.SequenceType(batch_type)),
       ('seed', tff.SequenceType(tff.TensorType(np.int64, [2])))],
      collections.OrderedDict)
  weights_type = tff.learning.models.weights_type_from_model(model)

  @tff.federated_computation
  def init_fn():
    return tff.federated_value((), tff.SERVER)

  @tff.tensorflow.computation(weights_type, data_type)
  def client_update(initial_weights, data):
    return _dp_sgd_fn(model_fn(), learning_rate=learning_rate, l2_clip=l2_clip,
                      noise_multiplier=noise_multiplier,
                      expected_batch_size=expected_batch_size)(initial_weights, data)

  @tff.tensorflow.computation
  def finalize_metrics(sums):
    # 0/0 (no bank sampled a row this round) is NaN: no loss was measured.
    return collections.OrderedDict(
        loss=sums['loss_sum'] / tf.cast(sums['num_examples'], tf.float32),
        num_examples=sums['num_examples'])

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.CLIENTS),
                             tff.FederatedType(data_type, tff.CLIENTS))
  def next_fn(state, weights, client_data):
    result, metrics = tff.federated_map(client_update, (weights, client_data))
    if not release_metrics:
      # The loss and the realized batch sizes are not noised: under DP they
      # stay on the banks (nothing of `metrics` leaves CLIENTS).
      return tff.templates.MeasuredProcessOutput(
          state, result, tff.federated_value(collections.OrderedDict(), tff.SERVER))
    train = tff.federated_map(finalize_metrics, tff.federated_sum(metrics))
    return tff.templates.MeasuredProcessOutput(
        state, result, tff.federated_zip(collections.OrderedDict(train=train)))

  return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)


def build_process(model_fn: Callable[[], tff.learning.models.VariableModel], *, client_lr: float,
                  server_lr: float, l2_clip: float, noise_multiplier: float,
                  expected_batch_size: int, model_aggregator,
                  release_metrics: bool = True) -> tff.learning.templates.LearningProcess:
  """FedAvg whose banks run DP-SGD (`build_client_work`), composed from TFF's templates.

  Federated types, with `W` the model weights (`tff.learning.models.ModelWeights`),
  `S` the server state (`tff.learning.templates.LearningAlgorithmState`: W, the
  aggregator's and the server optimizer's state) and `D` a bank's data
  `<batches=B*, seed=int64[2]*>` (`client_data`):

    initialize: ( -> S@SERVER)
    next:       (<state=S@SERVER, client_data={D}@CLIENTS>
                 -> <state=S@SERVER, metrics=M@SERVER>)

  In `next`, the server broadcasts W (TFF's broadcast distributor); each bank
  (CLIENTS) runs DP-SGD on its batches and returns its delta with weight
  `steps * expected_batch_size`; `model_aggregator` brings them to the SERVER
  (a weighted factory: the weighted mean; an unweighted one: the uniform 1/K
  mean, the weights dropped); server SGD at `server_lr` steps W. M holds
  `client_work/train/{loss, num_examples}` (not noised: see
  `build_client_work`) and the aggregator's and finalizer's measurements.

  The noise seeds are not in S: they come with each round's data, from the
  run's seed, the round and the bank, so a run resumed from a checkpoint of S
  (`tff.program.FileProgramStateManager`) trains exactly as an uninterrupted one.

  Args:
    model_fn: A no-argument function returning a new `tff.learning.models.VariableModel`.
    client_lr, l2_clip, noise_multiplier, expected_batch_size: The banks'
      DP-SGD (`build_client_work`).
    server_lr: The server's SGD step.
    model_aggregator: A `tff.aggregators` factory, weighted or unweighted
      (e.g. `tff_common.aggregation.build_aggregator`).
    release_metrics: False: the banks' (un-noised) loss and example counts
      stay on the banks, and M holds none.
  """
  _check_positive('server_lr', server_lr)

  @tff.tensorflow.computation
  def initial_model_weights_fn():
    return tff.learning.models.ModelWeights.from_model(model_fn())

  weights_type = initial_model_weights_fn.type_signature.result
  client_work = build_client_work(model_fn, learning_rate=client_lr, l2_clip=l2_clip,
                                  noise_multiplier=noise_multiplier,
                                  expected_batch_size=expected_batch_size,
                                  release_metrics=release_metrics)
  result_type = client_work.next.type_signature.result.result.member
  if isinstance(model_aggregator, tff.aggregators.UnweightedAggregationFactory):
    model_aggregator = tff.aggregators.as_weighted_aggregator(model_aggregator)
  aggregator = model_aggregator.create(result_type.update, result_type.update_weight)
  finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
      tff.learning.optimizers.build_sgdm(server_lr), weights_type)
  return tff.learning.templates.compose_learning_process(
      initial_model_weights_fn, tff.learning.templates.build_broadcast_process(weights_type),
      client_work, aggregator, finalizer)


def _dp_sgd_fn(model, *, learning_rate: float, l2_clip: float, noise_multiplier: float,
               expected_batch_size: int):
  """The client step of `build_client_work` as a `tf.function` of `(initial
  weights, data)`; a tf.function so that reading the trained weights is ordered
  after the training loop's assignments (automatic control dependencies)."""

  @tf.function
  def client_update(initial_weights, data):
    model_weights = tff.learning.models.ModelWeights.from_model(model)
    tf.nest.map_structure(lambda v, t: v.assign(t), model_weights, initial_weights)
    trainable = tf.nest.flatten(model_weights.trainable)
    sizes = [v.shape.num_elements() for v in trainable]
    seed = _the_one_seed(data['seed'])

    def per_example(example):
      """The gradient and loss of one example: the model's loss on a batch of it."""
      batch = tf.nest.map_structure(lambda t: tf.expand_dims(t, 0), example)
      with tf.GradientTape() as tape:
        loss = model.forward_pass(batch, training=True).loss
      return tape.gradient(loss, trainable), loss

    def step(state, batch):
      step_num, loss_sum, count = state
      # tf.vectorized_map cannot vectorize forward_pass (it updates the model's
      # metric variables), so the examples are a loop; an empty batch is zero
      # iterations.
      gradients, losses = tf.map_fn(
          per_example, batch,
          fn_output_signature=([tf.TensorSpec(v.shape, v.dtype) for v in trainable],
                               tf.TensorSpec([], tf.float32)))
      flat = tf.concat([tf.reshape(g, [tf.shape(g)[0], -1]) for g in gradients], axis=1)
      norms = tf.norm(flat, axis=1)
      # Scales each example to norm <= C; an example already within C is untouched.
      clipped_sum = tf.reduce_sum(flat / tf.maximum(1.0, norms / l2_clip)[:, None], axis=0)
      noise = noise_multiplier * l2_clip * standard_noise(seed, step_num, sum(sizes))
      direction = (clipped_sum + noise) / expected_batch_size
      for variable, part in zip(trainable, tf.split(direction, sizes), strict=True):
        variable.assign_sub(learning_rate * tf.reshape(part, variable.shape))
      return (step_num + 1, loss_sum + tf.reduce_sum(losses),
              count + tf.shape(losses, out_type=tf.int64)[0])

    steps, loss_sum, count = data['batches'].reduce(
        (tf.constant(0, tf.int64), tf.constant(0.0), tf.constant(0, tf.int64)), step)
    update = tf.nest.map_structure(tf.subtract, initial_weights.trainable,
                                   model_weights.trainable)
    weight = tf.cast(steps * expected_batch_size, tf.float32)
    return (tff.learning.templates.ClientResult(update=update, update_weight=weight),
            collections.OrderedDict(loss_sum=loss_sum, num_examples=count))

  return client_update


# Orchestrator side: one bank's data for one round.


def sampling_rate(rows: int, expected_batch_size: int) -> float:
  """q = B / rows, each row's probability of being in a batch.

  Raises ValueError when B exceeds the bank's rows: q would exceed 1, and
  sampling every row while dividing by B would silently shrink the step.
  """
  if rows < 1:
    raise ValueError(f'a bank needs at least one row, got {rows}')
  if expected_batch_size > rows:
    raise ValueError(f'the expected batch size ({expected_batch_size}) exceeds the '
                     f"bank's rows ({rows})")
  return expected_batch_size / rows


def steps_per_round(rows: int, expected_batch_size: int, local_epochs: int) -> int:
  """Local steps of a bank in one round: `round(local_epochs / q)`, at least 1,
  so that each row is sampled `local_epochs` times in expectation."""
  if local_epochs < 1:
    raise ValueError(f'local_epochs must be >= 1, got {local_epochs}')
  return max(1, round(local_epochs / sampling_rate(rows, expected_batch_size)))


def poisson_sample(rows: int, *, sampling_rate: float, steps: int,
                   seed: int) -> tuple[list[np.ndarray], np.ndarray]:
  """`steps` Poisson batches of row indices and the noise seed, from `seed` alone.

  Each row enters each batch independently with probability `sampling_rate`
  (so batch sizes vary and may be 0: what the accounting's subsampling
  assumes). The noise seed (int64[2]) is drawn first, so it does not depend on
  `rows` or `steps`.
  """
  if not 0 < sampling_rate <= 1:
    raise ValueError(f'sampling_rate must be in (0, 1], got {sampling_rate}')
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  rng = np.random.default_rng(seed)
  noise_seed = rng.integers(0, _MAX_SEED, size=2, dtype=np.int64)
  batches = [np.flatnonzero(rng.random(rows) < sampling_rate) for _ in range(steps)]
  return batches, noise_seed


def client_data(x: np.ndarray, y: np.ndarray, *, sampling_rate: float, steps: int,
                seed: int) -> collections.OrderedDict:
  """One bank's data for one round, `<batches=B*, seed=int64[2]*>`, as `next` takes it.

  Args:
    x: The bank's features, float32 [rows, d].
    y: Its labels, [rows] (as `federation.Federation.train` holds them).
    sampling_rate: q (`sampling_rate(rows, expected_batch_size)`).
    steps: The number of batches (`steps_per_round`).
    seed: Determines the batches and the noise (e.g.
      `tff_common.seeding.client_seed(run seed, round, bank)`).

  Returns:
    `OrderedDict(batches=tf.data.Dataset of (x float32[?, d], y float32[?, 1]),
    seed=tf.data.Dataset of one int64[2])`.
  """
  batches, noise_seed = poisson_sample(len(x), sampling_rate=sampling_rate, steps=steps,
                                       seed=seed)
  return client_data_of(x, y, batches=batches, noise_seed=noise_seed)


def client_data_of(x: np.ndarray, y: np.ndarray, *, batches: Sequence[np.ndarray],
                   noise_seed: np.ndarray) -> collections.OrderedDict:
  """A bank's data of given batches (row indices, any sizes) and noise seed
  int64[2]: what `client_data` returns for its Poisson batches."""
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.float32)
  if x.ndim != 2 or y.shape != (len(x),):
    raise ValueError(f'expected features [rows, d] and labels [rows], got shapes {x.shape} '
                     f'and {y.shape}')
  noise_seed = np.asarray(noise_seed, np.int64)
  if noise_seed.shape != (2,):
    raise ValueError(f'the noise seed must be int64[2], got shape {noise_seed.shape}')
  batches = [np.asarray(b, np.int64) for b in batches]
  # The batches' rows one after another, cut at their boundaries: one dataset of
  # variable-size (possibly empty) batches holding only this bank's rows.
  rows = np.concatenate(batches) if batches else np.zeros([0], np.int64)
  bounds = np.cumsum([0] + [len(b) for b in batches])
  features = tf.constant(x[rows])
  labels = tf.constant(y[rows][:, None])
  batch_data = tf.data.Dataset.from_tensor_slices((bounds[:-1], bounds[1:])).map(
      lambda start, end: (features[start:end], labels[start:end]))
  return collections.OrderedDict(batches=batch_data,
                                 seed=tf.data.Dataset.from_tensors(tf.constant(noise_seed)))


def _the_one_seed(seeds: tf.data.Dataset) -> tf.Tensor:
  """The single element of the seed sequence; any other count is an error, not a
  default seed."""
  count, seed = seeds.reduce((tf.constant(0, tf.int64), tf.zeros([2], tf.int64)),
                             lambda state, s: (state[0] + 1, s))
  with tf.control_dependencies([tf.debugging.assert_equal(
      count, tf.constant(1, tf.int64), message='a bank needs exactly one noise seed')]):
    return tf.identity(seed)


def _check_positive(name: str, value: float):
  if not value > 0:
    raise ValueError(f'{name} must be > 0, got {value}')

"""Biased matrix factorization: the Keras model and its TFF wrappers.

    rating(u, i) = offset + b_u + b_i + <p_u, q_i>

Item factors q_i and biases b_i and the offset are global (learned by the
federation); the user factors p_u and bias b_u are the user's own. In
Federated Reconstruction the user part is a single local row, rebuilt on the
device each round and never sent; in the FedAvg comparison and the
centralized baseline it is a table with one row per training user.

L2 regularization is the classic per-rating one (Funk / Koren SGD):
lambda * (|p_u|^2 + b_u^2 + |q_i|^2 + b_i^2) added to each rating's squared
error. TFF's reconstruction algorithms compute the loss from `(labels,
predictions)` only, not from Keras regularizers, so the model emits the
penalty as a second output column, `[prediction, penalty]`, which
`RatingLoss` adds and the metrics ignore.

Implicit feedback (weighted imputed negatives, WRMF / iALS style): a user's
on-device dataset may also hold items the user has NOT rated, sampled on the
device from the public item vocabulary (`clients.sample_negatives`), with
target `NEGATIVE_TARGET` and a small weight. Labels therefore have three
columns, `[target, weight, is_rating]`: the loss is the weighted squared error
plus the weighted penalty, `weight * ((target - prediction)^2 + penalty)`
(weight 1 for a real rating), and RMSE / MAE count real ratings only
(`is_rating`). Without negatives every example is a real rating of weight 1
and the loss is the plain per-rating one.
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

ITEM_FACTORS = 'item_factors'
ITEM_BIAS = 'item_bias'
USER_FACTORS = 'user_factors'
USER_BIAS = 'user_bias'
OFFSET = 'offset'
GLOBAL_NAMES = (ITEM_FACTORS, ITEM_BIAS, OFFSET)
# Every MovieLens release rates on a scale within [0.5, 5].
MIN_RATING, MAX_RATING = 0.5, 5.0
LOCAL_NAMES = (USER_FACTORS, USER_BIAS)
# The rating an imputed (unrated, sampled) item is trained towards.
NEGATIVE_TARGET = 0.0
# Label columns.
TARGET, WEIGHT, IS_RATING = 0, 1, 2
LABEL_WIDTH = 3


def labels(targets, weights=None, is_rating=None):
  """`[N, 3]` float32 labels; defaults: weight 1, every example a real rating."""
  targets = np.asarray(targets, np.float32).reshape(-1)
  weights = np.ones_like(targets) if weights is None else np.asarray(weights, np.float32)
  is_rating = np.ones_like(targets) if is_rating is None else np.asarray(is_rating, np.float32)
  return np.stack([targets, weights.reshape(-1), is_rating.reshape(-1)], axis=-1)


class Offset(tf.keras.layers.Layer):
  """A learned scalar added to every prediction (starts at the mean rating)."""

  def __init__(self, initial_value: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self._initial_value = float(initial_value)

  def build(self, input_shape):
    self.value = self.add_weight(
        name='value', shape=(), dtype=tf.float32,
        initializer=tf.keras.initializers.Constant(self._initial_value))
    super().build(input_shape)

  def call(self, inputs):
    return tf.fill(tf.shape(inputs), self.value)


class MatrixFactorization(tf.keras.Model):
  """Predicts `[rating, penalty]` for batches of `{'item', ['user'], ['rated']}`.

  Without a 'user' input (Federated Reconstruction) every rating belongs to
  user row 0: the one local user of the client.
  """

  def __init__(self, *, num_items: int, num_users: int, dim: int, l2: float,
               global_mean: float, seed: int = 0):
    super().__init__()
    self.l2 = l2
    self.item_factors = tf.keras.layers.Embedding(
        num_items, dim, name=ITEM_FACTORS,
        embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.1, seed=seed))
    self.item_bias = tf.keras.layers.Embedding(
        num_items, 1, name=ITEM_BIAS, embeddings_initializer='zeros')
    # Zero user rows make reconstruction deterministic and start every new
    # user at the item-only prediction.
    self.user_factors = tf.keras.layers.Embedding(
        num_users, dim, name=USER_FACTORS, embeddings_initializer='zeros')
    self.user_bias = tf.keras.layers.Embedding(
        num_users, 1, name=USER_BIAS, embeddings_initializer='zeros')
    self.offset = Offset(global_mean, name=OFFSET)

  def call(self, inputs, training=False):
    del training
    item = inputs['item']
    user = inputs['user'] if 'user' in inputs else tf.zeros_like(item)
    q = self.item_factors(item)
    b_i = tf.squeeze(self.item_bias(item), -1)
    p = self.user_factors(user)
    b_u = tf.squeeze(self.user_bias(user), -1)
    # An imputed negative (rated = 0) is scored without the user's bias, and
    # does not train the offset: b_u and the offset are the rating level,
    # fitted to real ratings only. The negatives pull the item biases and
    # factors of items users do not choose to rate below that level (what
    # ranks) without dragging every predicted rating of the user down.
    rated = (tf.cast(inputs['rated'], tf.float32) if 'rated' in inputs
             else tf.ones_like(b_i))
    offset = self.offset(b_i)
    offset = rated * offset + (1.0 - rated) * tf.stop_gradient(offset)
    user_bias = rated * b_u
    prediction = offset + b_i + user_bias + tf.reduce_sum(p * q, -1)
    penalty = self.l2 * (tf.reduce_sum(p * p, -1) + tf.square(user_bias) +
                         tf.reduce_sum(q * q, -1) + tf.square(b_i))
    return tf.stack([prediction, penalty], axis=-1)

  def layer(self, name: str) -> tf.keras.layers.Layer:
    return getattr(self, name)


class RatingLoss(tf.keras.losses.Loss):
  """Weighted squared error plus the weighted per-example L2 penalty column."""

  def __init__(self, name='rating_loss', **kwargs):
    super().__init__(name=name, **kwargs)

  def call(self, y_true, y_pred):
    y_true = tf.cast(tf.reshape(y_true, [-1, LABEL_WIDTH]), tf.float32)
    return y_true[:, WEIGHT] * (tf.square(y_true[:, TARGET] - y_pred[:, 0]) + y_pred[:, 1])


def _rating_columns(y_true, sample_weight):
  """(targets, weights): only real ratings count in the rating metrics."""
  y_true = tf.cast(tf.reshape(y_true, [-1, LABEL_WIDTH]), tf.float32)
  weight = y_true[:, IS_RATING]
  if sample_weight is not None:
    weight = weight * tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
  return y_true[:, TARGET], weight


def clipped_prediction(y_pred):
  """The prediction column, clipped to the rating scale as a recommender shows it."""
  return tf.clip_by_value(y_pred[:, 0], MIN_RATING, MAX_RATING)


class RatingRMSE(tf.keras.metrics.RootMeanSquaredError):
  """RMSE of the (clipped) prediction column; the penalty column is not a prediction."""

  def __init__(self, name='rmse', dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    target, weight = _rating_columns(y_true, sample_weight)
    return super().update_state(target, clipped_prediction(y_pred), weight)


class RatingMAE(tf.keras.metrics.Mean):
  """MAE of the (clipped) prediction column."""

  def __init__(self, name='mae', dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    target, weight = _rating_columns(y_true, sample_weight)
    return super().update_state(tf.abs(target - clipped_prediction(y_pred)), weight)


def metrics_fn():
  return [RatingRMSE(), RatingMAE()]


def recon_input_spec():
  """Batches of one user's ratings; `is_test` marks evaluation-only batches."""
  return collections.OrderedDict(
      x=collections.OrderedDict(item=tf.TensorSpec([None], tf.int32),
                                rated=tf.TensorSpec([None], tf.float32),
                                is_test=tf.TensorSpec([None], tf.bool)),
      y=tf.TensorSpec([None, LABEL_WIDTH], tf.float32))


def global_input_spec():
  """Batches that name their user row (FedAvg over a global user table)."""
  return collections.OrderedDict(
      x=collections.OrderedDict(user=tf.TensorSpec([None], tf.int32),
                                item=tf.TensorSpec([None], tf.int32),
                                rated=tf.TensorSpec([None], tf.float32)),
      y=tf.TensorSpec([None, LABEL_WIDTH], tf.float32))


def build_keras_model(*, num_items: int, num_users: int, dim: int, l2: float,
                      global_mean: float, seed: int = 0,
                      with_user_input: bool) -> MatrixFactorization:
  """A built (variables created) MatrixFactorization."""
  model = MatrixFactorization(num_items=num_items, num_users=num_users, dim=dim,
                              l2=l2, global_mean=global_mean, seed=seed)
  dummy = {'item': tf.zeros([1], tf.int32)}
  if with_user_input:
    dummy['user'] = tf.zeros([1], tf.int32)
  model(dummy)
  return model


def reconstruction_model_fn(*, num_items: int, dim: int, l2: float,
                            global_mean: float, seed: int = 0):
  """A no-arg `model_fn` for `build_fed_recon` / `build_fed_recon_eval`."""

  def model_fn():
    keras_model = build_keras_model(num_items=num_items, num_users=1, dim=dim,
                                    l2=l2, global_mean=global_mean, seed=seed,
                                    with_user_input=False)
    return tff.learning.models.ReconstructionModel.from_keras_model_and_layers(
        keras_model=keras_model,
        global_layers=[keras_model.layer(n) for n in GLOBAL_NAMES],
        local_layers=[keras_model.layer(n) for n in LOCAL_NAMES],
        input_spec=recon_input_spec())

  return model_fn


def global_model_fn(*, num_items: int, num_users: int, dim: int, l2: float,
                    global_mean: float, seed: int = 0):
  """A no-arg `model_fn` for FedAvg: every variable, user table included, is global."""

  def model_fn():
    keras_model = build_keras_model(num_items=num_items, num_users=num_users,
                                    dim=dim, l2=l2, global_mean=global_mean,
                                    seed=seed, with_user_input=True)
    return tff.learning.models.from_keras_model(
        keras_model, loss=RatingLoss(), metrics=metrics_fn(),
        input_spec=global_input_spec())

  return model_fn


def variable_layers(keras_model: tf.keras.Model) -> list[str]:
  """The layer name of each trainable variable, in the model's order."""
  owner = {v.ref(): layer.name for layer in keras_model.layers
           for v in layer.trainable_variables}
  return [owner[v.ref()] for v in keras_model.trainable_variables]

"""Two-headed matrix factorization: the Keras model and its TFF wrappers.

    rating(u, i) = offset + b_u + b_i + <p_u, q_i>       how much u likes i
    rated(u, i)  = c_i + <s_u, t_i>                      the log-odds that u rates i

The rating head answers "how many stars?" and is judged by RMSE; the
implicit head answers "will this user pick this item at all?" and is what
top-N lists are ranked by. A model of explicit ratings alone ranks poorly:
the items a user rates are not a random sample, and rarely rated items with a
few high ratings crowd its top 10 (on the bundled data every rating-only
model, centralized included, ranked below the popularity recommender). The
implicit head is logistic matrix factorization on rated (1) vs. unrated (0)
items, the unrated ones sampled on the user's device from the public item
vocabulary (`reconstruction.with_negatives`); nothing about them leaves the device.
The heads share no parameter, so the implicit one cannot cost RMSE.

Item parameters (q_i, b_i, t_i, c_i) and the offset are global (learned by the
federation); the user parameters (p_u, b_u, s_u) are the user's own. In
Federated Reconstruction the user part is a single local row, rebuilt on the
device each round and never sent; in the FedAvg comparison and the centralized
baseline it is a table with one row per training user. `implicit=False`
builds the rating head alone.

Labels are `[target, is_rating]`: a real rating (1) or a sampled unrated item
(0, target unused). The loss of a batch is

    mean over its ratings of (r - rating)^2 + l2 (|p|^2 + b_u^2 + |q|^2 + b_i^2)
    + implicit_weight * mean over all its examples of
        BCE(is_rating, rated) + implicit_l2 (|s|^2 + |t|^2)

so the rating head sees exactly the per-rating loss of a rating-only model,
however many unrated items share the batch, and `implicit_weight` is the
implicit head's step size relative to it (plain SGD: its learning rate
multiplier). L2 is the classic per-example one (Funk / Koren SGD). TFF's
reconstruction algorithms compute the loss from `(labels, predictions)` only,
not from Keras regularizers, so the model emits the penalties as prediction
columns, `[rating, penalty, rated_logit, rated_penalty]`, which `RatingLoss`
uses and the metrics ignore.
"""

import collections
import functools

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_rec import data as data_lib

ITEM_FACTORS = 'item_factors'
ITEM_BIAS = 'item_bias'
USER_FACTORS = 'user_factors'
USER_BIAS = 'user_bias'
OFFSET = 'offset'
IMPLICIT_ITEM_FACTORS = 'implicit_item_factors'
IMPLICIT_ITEM_BIAS = 'implicit_item_bias'
IMPLICIT_USER_FACTORS = 'implicit_user_factors'
# Label columns.
TARGET, IS_RATING = 0, 1
LABEL_WIDTH = 2
# Prediction columns.
RATING, PENALTY, RATED_LOGIT, RATED_PENALTY = 0, 1, 2, 3


def global_names(implicit: bool) -> tuple[str, ...]:
  """Layers the federation learns (in the order of the model's variables)."""
  names = (ITEM_FACTORS, ITEM_BIAS, OFFSET)
  return names + (IMPLICIT_ITEM_FACTORS, IMPLICIT_ITEM_BIAS) if implicit else names


def local_names(implicit: bool) -> tuple[str, ...]:
  """Layers that belong to one user."""
  names = (USER_FACTORS, USER_BIAS)
  return names + (IMPLICIT_USER_FACTORS,) if implicit else names


def labels(targets, is_rating=None):
  """`[N, 2]` float32 labels; by default every example is a real rating."""
  targets = np.asarray(targets, np.float32).reshape(-1)
  is_rating = np.ones_like(targets) if is_rating is None else np.asarray(is_rating, np.float32)
  return np.stack([targets, is_rating.reshape(-1)], axis=-1)


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


def _zeros(seed: int) -> str:
  del seed
  return 'zeros'


class MatrixFactorization(tf.keras.Model):
  """Predicts `[rating, penalty, rated_logit, rated_penalty]` for `{'item', ['user']}`.

  Without a 'user' input (Federated Reconstruction) every example belongs to
  user row 0: the one local user of the client. Without the implicit head the
  last two columns are zero.
  """

  def __init__(self, *, num_items: int, num_users: int, dim: int, l2: float,
               global_mean: float, seed: int = 0, implicit: bool,
               implicit_l2: float, random_init: bool = True):
    super().__init__()
    self.l2 = l2
    self.implicit_l2 = implicit_l2
    self.implicit = implicit
    # A client's copy (not `random_init`) is overwritten by the broadcast
    # weights before use: drawing its tables cost a third of a FedRecon round.
    normal = (functools.partial(tf.keras.initializers.RandomNormal, stddev=0.1) if random_init
              else _zeros)
    self.item_factors = tf.keras.layers.Embedding(
        num_items, dim, name=ITEM_FACTORS, embeddings_initializer=normal(seed=seed))
    self.item_bias = tf.keras.layers.Embedding(
        num_items, 1, name=ITEM_BIAS, embeddings_initializer='zeros')
    # Zero user rows make reconstruction deterministic and start every new
    # user at the item-only prediction.
    self.user_factors = tf.keras.layers.Embedding(
        num_users, dim, name=USER_FACTORS, embeddings_initializer='zeros')
    self.user_bias = tf.keras.layers.Embedding(
        num_users, 1, name=USER_BIAS, embeddings_initializer='zeros')
    self.offset = Offset(global_mean, name=OFFSET)
    if implicit:
      self.implicit_item_factors = tf.keras.layers.Embedding(
          num_items, dim, name=IMPLICIT_ITEM_FACTORS,
          embeddings_initializer=normal(seed=seed + 1))
      self.implicit_item_bias = tf.keras.layers.Embedding(
          num_items, 1, name=IMPLICIT_ITEM_BIAS, embeddings_initializer='zeros')
      self.implicit_user_factors = tf.keras.layers.Embedding(
          num_users, dim, name=IMPLICIT_USER_FACTORS, embeddings_initializer='zeros')

  def call(self, inputs, training=False):
    del training
    item = inputs['item']
    user = inputs['user'] if 'user' in inputs else tf.zeros_like(item)
    q = self.item_factors(item)
    b_i = tf.squeeze(self.item_bias(item), -1)
    p = self.user_factors(user)
    b_u = tf.squeeze(self.user_bias(user), -1)
    rating = self.offset(b_i) + b_i + b_u + tf.reduce_sum(p * q, -1)
    penalty = self.l2 * (tf.reduce_sum(p * p, -1) + tf.square(b_u) +
                         tf.reduce_sum(q * q, -1) + tf.square(b_i))
    if self.implicit:
      t = self.implicit_item_factors(item)
      s = self.implicit_user_factors(user)
      rated_logit = (tf.squeeze(self.implicit_item_bias(item), -1) +
                     tf.reduce_sum(s * t, -1))
      rated_penalty = self.implicit_l2 * (tf.reduce_sum(s * s, -1) + tf.reduce_sum(t * t, -1))
    else:
      rated_logit = rated_penalty = tf.zeros_like(rating)
    return tf.stack([rating, penalty, rated_logit, rated_penalty], axis=-1)

  def layer(self, name: str) -> tf.keras.layers.Layer:
    return getattr(self, name)


class RatingLoss(tf.keras.losses.Loss):
  """The two-head loss of a batch (module docstring).

  Keras averages the per-example values over the batch; a rating's value is
  scaled by batch size / ratings in the batch so that the ratings' part is
  their mean, not diluted by the unrated items beside them.
  """

  def __init__(self, implicit_weight: float, name='rating_loss', **kwargs):
    super().__init__(name=name, **kwargs)
    self.implicit_weight = float(implicit_weight)

  def call(self, y_true, y_pred):
    y_true = tf.cast(tf.reshape(y_true, [-1, LABEL_WIDTH]), tf.float32)
    is_rating = y_true[:, IS_RATING]
    size = tf.cast(tf.shape(is_rating)[0], tf.float32)
    per_rating = size / tf.maximum(tf.reduce_sum(is_rating), 1.0)
    rating_part = is_rating * per_rating * (
        tf.square(y_true[:, TARGET] - y_pred[:, RATING]) + y_pred[:, PENALTY])
    if not self.implicit_weight:
      return rating_part
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=is_rating,
                                                  logits=y_pred[:, RATED_LOGIT])
    return rating_part + self.implicit_weight * (bce + y_pred[:, RATED_PENALTY])

  def get_config(self):
    return {**super().get_config(), 'implicit_weight': self.implicit_weight}


def loss_fn(implicit_weight: float):
  """A no-arg `loss_fn` for TFF's reconstruction algorithms."""
  return functools.partial(RatingLoss, implicit_weight=implicit_weight)


def _rating_columns(y_true, sample_weight):
  """(targets, weights): only real ratings count in the rating metrics."""
  y_true = tf.cast(tf.reshape(y_true, [-1, LABEL_WIDTH]), tf.float32)
  weight = y_true[:, IS_RATING]
  if sample_weight is not None:
    weight = weight * tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
  return y_true[:, TARGET], weight


def clipped_prediction(y_pred):
  """The rating column, clipped to the rating scale as a recommender shows it."""
  return tf.clip_by_value(y_pred[:, RATING], data_lib.MIN_RATING, data_lib.MAX_RATING)


class RatingRMSE(tf.keras.metrics.RootMeanSquaredError):
  """RMSE of the (clipped) rating column over real ratings."""

  def __init__(self, name='rmse', dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    target, weight = _rating_columns(y_true, sample_weight)
    return super().update_state(target, clipped_prediction(y_pred), weight)


class RatingMAE(tf.keras.metrics.Mean):
  """MAE of the (clipped) rating column over real ratings."""

  def __init__(self, name='mae', dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    target, weight = _rating_columns(y_true, sample_weight)
    return super().update_state(tf.abs(target - clipped_prediction(y_pred)), weight)


class RatedLoss(tf.keras.metrics.Mean):
  """Mean logistic loss of the implicit head, rated (1) vs. unrated (0) items.

  On test ratings alone (evaluation) it is the mean -log P(rated) of the
  items the user went on to rate: how well the head anticipated them.
  """

  def __init__(self, name='rated_loss', dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_true = tf.cast(tf.reshape(y_true, [-1, LABEL_WIDTH]), tf.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true[:, IS_RATING],
                                                  logits=y_pred[:, RATED_LOGIT])
    return super().update_state(bce, sample_weight)


def metrics_fn(implicit: bool = False):
  """The metrics of a model (with `implicit`, of both heads)."""
  return [RatingRMSE(), RatingMAE()] + ([RatedLoss()] if implicit else [])


def recon_input_spec():
  """Batches of one user's examples; `is_test` marks evaluation-only batches."""
  return collections.OrderedDict(
      x=collections.OrderedDict(item=tf.TensorSpec([None], tf.int32),
                                is_test=tf.TensorSpec([None], tf.bool)),
      y=tf.TensorSpec([None, LABEL_WIDTH], tf.float32))


def global_input_spec():
  """Batches that name their user row (FedAvg over a global user table)."""
  return collections.OrderedDict(
      x=collections.OrderedDict(user=tf.TensorSpec([None], tf.int32),
                                item=tf.TensorSpec([None], tf.int32)),
      y=tf.TensorSpec([None, LABEL_WIDTH], tf.float32))


def build_keras_model(*, num_items: int, num_users: int, dim: int, l2: float,
                      global_mean: float, seed: int = 0, implicit: bool,
                      implicit_l2: float, with_user_input: bool,
                      random_init: bool = True) -> MatrixFactorization:
  """A built (variables created) MatrixFactorization (item factors all zero
  unless `random_init`)."""
  model = MatrixFactorization(num_items=num_items, num_users=num_users, dim=dim,
                              l2=l2, global_mean=global_mean, seed=seed, implicit=implicit,
                              implicit_l2=implicit_l2, random_init=random_init)
  dummy = {'item': tf.zeros([1], tf.int32)}
  if with_user_input:
    dummy['user'] = tf.zeros([1], tf.int32)
  model(dummy)
  return model


def reconstruction_model_fn(*, num_items: int, dim: int, l2: float,
                            global_mean: float, seed: int = 0, implicit: bool,
                            implicit_l2: float, random_init: bool = True):
  """A no-arg `model_fn` for `build_fed_recon` / `build_fed_recon_eval`
  (`random_init=False`: zero item factors, for a client's copy of the model).

  It builds a `tff.learning.models.ReconstructionModel` whose global layers
  (item factors and biases of both heads, the offset) are the federation's
  and whose local layers (one user row: factors, bias, implicit factors) exist
  only on the client; batches are `recon_input_spec()`.
  """

  def model_fn():
    keras_model = build_keras_model(num_items=num_items, num_users=1, dim=dim,
                                    l2=l2, global_mean=global_mean, seed=seed,
                                    implicit=implicit, implicit_l2=implicit_l2,
                                    with_user_input=False, random_init=random_init)
    return tff.learning.models.ReconstructionModel.from_keras_model_and_layers(
        keras_model=keras_model,
        global_layers=[keras_model.layer(n) for n in global_names(implicit)],
        local_layers=[keras_model.layer(n) for n in local_names(implicit)],
        input_spec=recon_input_spec())

  return model_fn


def global_model_fn(*, num_items: int, num_users: int, dim: int, l2: float,
                    global_mean: float, seed: int = 0, implicit: bool,
                    implicit_l2: float, implicit_weight: float):
  """A no-arg `model_fn` for FedAvg: every variable, user tables included, is global."""

  def model_fn():
    keras_model = build_keras_model(num_items=num_items, num_users=num_users,
                                    dim=dim, l2=l2, global_mean=global_mean,
                                    seed=seed, implicit=implicit, implicit_l2=implicit_l2,
                                    with_user_input=True)
    return tff.learning.models.from_keras_model(
        keras_model, loss=RatingLoss(implicit_weight), metrics=metrics_fn(implicit),
        input_spec=global_input_spec())

  return model_fn


def variable_layers(keras_model: tf.keras.Model) -> list[str]:
  """The layer name of each trainable variable, in the model's order."""
  owner = {v.ref(): layer.name for layer in keras_model.layers
           for v in layer.trainable_variables}
  return [owner[v.ref()] for v in keras_model.trainable_variables]

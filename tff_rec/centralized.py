"""The non-federated references: centralized MF (upper bound) and popularity (floor).

Both run in one Python process on the pooled training ratings of the
training users (the same split the federation sees); nothing here is
federated. Centralized MF is the same model and loss as the federated ones,
with a user table, trained by Adam on shuffled mini-batches.
"""

import numpy as np
import tensorflow as tf

from tff_rec import model as model_lib
from tff_rec import params as params_lib
from tff_rec import progress
from tff_rec import split as split_lib


def train_mf(split: split_lib.Split, *, dim: int, l2: float, epochs: int = 15,
             learning_rate: float = 0.003, batch_size: int = 256, seed: int = 0,
             log=progress.log_line) -> params_lib.MFParams:
  """Centralized biased MF on all training ratings; returns its parameters."""
  tf.keras.utils.set_random_seed(seed)
  part = split.train
  users = np.repeat(np.arange(len(part), dtype=np.int32), part.counts())
  keras_model = model_lib.build_keras_model(
      num_items=split.num_items, num_users=len(part), dim=dim, l2=l2,
      global_mean=split.global_mean(), seed=seed, with_user_input=True)
  keras_model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                      loss=model_lib.RatingLoss(), metrics=[model_lib.RatingRMSE()])
  dataset = tf.data.Dataset.from_tensor_slices((
      {'user': users, 'item': part.items.astype(np.int32)},
      part.ratings.reshape(-1, 1))).shuffle(
          part.num_ratings, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
  history = keras_model.fit(dataset, epochs=epochs, verbose=0)
  log(f'centralized MF: {epochs} epochs, final train RMSE '
      f'{history.history["rmse"][-1]:.4f}')
  return params_lib.from_weights(
      [v.numpy() for v in keras_model.trainable_variables],
      model_lib.variable_layers(keras_model), l2=l2)


def popularity(split: split_lib.Split) -> np.ndarray:
  """Item scores of the popularity recommender: training ratings per item."""
  return np.bincount(split.train.items, minlength=split.num_items).astype(np.float32)

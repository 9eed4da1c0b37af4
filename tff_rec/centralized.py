"""The non-federated references: centralized MF (upper bound) and popularity (floor).

Both run in one Python process on the pooled training ratings of the
training users (the same split the federation sees); nothing here is
federated. Centralized MF is the same model and loss as the federated ones,
with a user table, trained by Adam on shuffled mini-batches.
"""

import numpy as np
import tensorflow as tf

from tff_common import program
from tff_rec import model as model_lib
from tff_rec import params as params_lib
from tff_rec import split as split_lib


def _epoch_examples(part: split_lib.UserRatings, *, num_items: int, epoch: int, seed: int,
                    negatives_per_rating: float, negative_weight: float):
  """(users, items, labels) of one epoch: every rating, plus fresh negatives per user."""
  users, items, labels = [], [], []
  for k in range(len(part)):
    it, targets, weights, is_rating = params_lib.with_negatives(
        part.items_of(k), part.ratings_of(k), num_items=num_items,
        negatives_per_rating=negatives_per_rating, negative_weight=negative_weight,
        rng=params_lib.negatives_rng(seed, int(part.users[k]), epoch))
    users.append(np.full(len(it), k, np.int32))
    items.append(it)
    labels.append(model_lib.labels(targets, weights, is_rating))
  return np.concatenate(users), np.concatenate(items), np.concatenate(labels)


def train_mf(split: split_lib.Split, *, dim: int, l2: float, epochs: int = 15,
             learning_rate: float = 0.003, batch_size: int = 256, seed: int = 0,
             negatives_per_rating: float = 0.0, negative_weight: float = 0.0,
             log=program.print_flushed) -> params_lib.MFParams:
  """Centralized biased MF on all training ratings (plus the same kind of imputed
  negatives as the federated clients, drawn afresh each epoch); returns its parameters."""
  tf.keras.utils.set_random_seed(seed)
  part = split.train
  keras_model = model_lib.build_keras_model(
      num_items=split.num_items, num_users=len(part), dim=dim, l2=l2,
      global_mean=split.global_mean(), seed=seed, with_user_input=True)
  keras_model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                      loss=model_lib.RatingLoss(), metrics=[model_lib.RatingRMSE()])
  for epoch in range(epochs):
    users, items, labels = _epoch_examples(
        part, num_items=split.num_items, epoch=epoch, seed=seed,
        negatives_per_rating=negatives_per_rating, negative_weight=negative_weight)
    dataset = tf.data.Dataset.from_tensor_slices((
        {'user': users, 'item': items, 'rated': labels[:, model_lib.IS_RATING]}, labels)).shuffle(
            len(items), seed=seed + epoch, reshuffle_each_iteration=False).batch(batch_size)
    history = keras_model.fit(dataset, epochs=1, verbose=0)
  log(f'centralized MF: {epochs} epochs, final train RMSE '
      f'{history.history["rmse"][-1]:.4f}')
  return params_lib.from_weights(
      [v.numpy() for v in keras_model.trainable_variables],
      model_lib.variable_layers(keras_model), l2=l2)


def popularity(split: split_lib.Split) -> np.ndarray:
  """Item scores of the popularity recommender: training ratings per item."""
  return np.bincount(split.train.items, minlength=split.num_items).astype(np.float32)

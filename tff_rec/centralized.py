"""The non-federated references: centralized MF (upper bound) and popularity (floor).

Both run in one Python process on the pooled training ratings of the
training users (the same split the federation sees); nothing here is
federated. Centralized MF is the same two-head model and loss as the federated
ones, with user tables, trained by Adam on shuffled mini-batches (Adam scales
each parameter's steps itself, so `implicit_weight` matters little here).
"""

import numpy as np
import tensorflow as tf

from tff_common import progress
from tff_common import seeding
from tff_rec import model as model_lib
from tff_rec import params as params_lib
from tff_rec import reconstruction
from tff_rec import split as split_lib


def _epoch_examples(part: split_lib.UserRatings, *, num_items: int, epoch: int, seed: int,
                    negatives_per_rating: float):
  """(users, items, labels) of one epoch: every rating, plus fresh unrated items per user."""
  users, items, labels = [], [], []
  for k in range(len(part)):
    it, targets, is_rating = reconstruction.with_negatives(
        part.items_of(k), part.ratings_of(k), num_items=num_items,
        negatives_per_rating=negatives_per_rating,
        rng=reconstruction.negatives_rng(seed, int(part.users[k]), epoch))
    users.append(np.full(len(it), k, np.int32))
    items.append(it)
    labels.append(model_lib.labels(targets, is_rating))
  return np.concatenate(users), np.concatenate(items), np.concatenate(labels)


def train_mf(split: split_lib.Split, *, config, batch_size: int = 256,
             log=progress.print_flushed) -> params_lib.MFParams:
  """Centralized two-head MF on all training ratings; returns its parameters.

  `config` is the run's `config.TrainConfig`: the model and its unrated
  items (drawn afresh each epoch) are the federated runs'; the optimizer is
  Adam with `centralized_lr`, `centralized_l2` and `centralized_epochs`. A
  batch holds `batch_size` ratings and its share of unrated items.
  """
  seeding.set_seed(config.seed)
  part = split.train
  kwargs = {**config.model_kwargs(split), 'l2': config.centralized_l2}
  keras_model = model_lib.build_keras_model(num_users=len(part), with_user_input=True, **kwargs)
  keras_model.compile(optimizer=tf.keras.optimizers.Adam(config.centralized_lr),
                      loss=model_lib.RatingLoss(config.loss_weight()),
                      metrics=[model_lib.RatingRMSE()])
  for epoch in range(config.centralized_epochs):
    users, items, labels = _epoch_examples(
        part, num_items=split.num_items, epoch=epoch, seed=config.seed,
        negatives_per_rating=config.negatives())
    dataset = tf.data.Dataset.from_tensor_slices((
        {'user': users, 'item': items}, labels)).shuffle(
            len(items), seed=config.seed + epoch, reshuffle_each_iteration=False).batch(
                int(round(batch_size * (1 + config.negatives()))))
    history = keras_model.fit(dataset, epochs=1, verbose=0)
  log(f'centralized MF: {config.centralized_epochs} epochs, final train RMSE '
      f'{history.history["rmse"][-1]:.4f}')
  return params_lib.from_weights(
      [v.numpy() for v in keras_model.trainable_variables],
      model_lib.variable_layers(keras_model), l2=config.centralized_l2,
      implicit_l2=config.implicit_l2)


def popularity(split: split_lib.Split) -> np.ndarray:
  """Item scores of the popularity recommender: training ratings per item."""
  return np.bincount(split.train.items, minlength=split.num_items).astype(np.float32)

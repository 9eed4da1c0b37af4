"""Per-user `tf.data` datasets, built on demand (Python orchestrator -> clients).

A user's dataset is cut from the grouped rating arrays only when that user is
sampled, so memory holds the ratings once and never a users x items matrix.
Datasets are a pure function of (user, round, seed): a resumed run feeds the
clients exactly what an uninterrupted run would.

For the implicit head (`model.py`) each sampled user's dataset also holds
`negatives_per_rating` x as many items the user has not rated, drawn on the
device uniformly from the public item vocabulary (seed (seed, round, user);
`reconstruction.with_negatives`). They are trained on and reconstructed from on the
device only: nothing new leaves it (the client still sends only its
item-parameter delta).
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_common import seeding
from tff_rec import model as model_lib
from tff_rec import reconstruction
from tff_rec import split as split_lib


def _examples(items, y, is_test) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=collections.OrderedDict(item=np.asarray(items, np.int32),
                                is_test=np.asarray(is_test, bool)),
      y=y))


def user_examples(part: split_lib.UserRatings, k: int, *, num_items: int = 0,
                  negatives_per_rating: float = 0.0, rng: np.random.Generator = None,
                  global_user_table: bool = False) -> tf.data.Dataset:
  """User k's ratings, one example each, in stored order (mixed with unrated
  items when `negatives_per_rating` > 0).

  For the FedAvg model (`global_user_table`) an example names its user row k
  instead of carrying the `is_test` marker of the reconstruction model.
  """
  items, ratings = part.items_of(k), part.ratings_of(k)
  if negatives_per_rating > 0:
    items, targets, is_rating = reconstruction.with_negatives(
        items, ratings, num_items=num_items, negatives_per_rating=negatives_per_rating,
        rng=rng)
    y = model_lib.labels(targets, is_rating)
  else:
    y = model_lib.labels(ratings)
  if not global_user_table:
    return _examples(items, y, np.zeros(len(items), bool))
  return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=collections.OrderedDict(user=np.full(len(items), k, np.int32),
                                item=np.asarray(items, np.int32)),
      y=y))


def eval_dataset(train: split_lib.UserRatings, test: split_lib.UserRatings, k: int, *,
                 recon: reconstruction.ReconConfig, num_items: int) -> tf.data.Dataset:
  """User k's train batches (to reconstruct from, with the device's unrated
  items), then test batches (to score: real test ratings only)."""
  items, targets, is_rating = recon.examples(
      num_items, int(train.users[k]), train.items_of(k), train.ratings_of(k))
  rebuild = _examples(items, model_lib.labels(targets, is_rating),
                      np.zeros(len(items), bool)).batch(recon.batch_size)
  scored = _examples(test.items_of(k), model_lib.labels(test.ratings_of(k)),
                     np.ones(len(test.items_of(k)), bool)).batch(recon.batch_size)
  return rebuild.concatenate(scored)


def client_ids(part: split_lib.UserRatings) -> list[str]:
  return [str(u) for u in part.users]


def client_data(part: split_lib.UserRatings, *,
                global_user_table: bool = False) -> tff.simulation.datasets.ClientData:
  """One client per user; a user's dataset is cut from `part` when asked for."""
  def dataset_fn(client_id: str) -> tf.data.Dataset:
    return user_examples(part, part.position(int(client_id)),
                         global_user_table=global_user_table)
  return tff.simulation.datasets.ClientData.from_clients_and_tf_fn(
      client_ids(part), dataset_fn)


def training_data_fn(part: split_lib.UserRatings, *, batch_size: int, seed: int,
                     global_user_table: bool = False, num_items: int = 0,
                     negatives_per_rating: float = 0.0):
  """`client_data_fn(sampled_ids, round_num)` for `tff_common.program.run_training`.

  Each sampled user's examples (ratings, plus unrated items drawn afresh each round
  with a seed of (seed, round, user) when `negatives_per_rating` > 0) are
  shuffled with a seed of (seed, round, user) and batched; the order is fixed
  within the round, so reconstruction and training passes see the same batches.
  """
  def client_data_fn(sampled_ids, round_num):
    datasets = []
    for cid in sampled_ids:
      k = part.position(int(cid))
      dataset = user_examples(
          part, k, num_items=num_items, negatives_per_rating=negatives_per_rating,
          rng=reconstruction.negatives_rng(seed, int(cid), round_num),
          global_user_table=global_user_table)
      size = max(int(dataset.cardinality()), 1)
      datasets.append(dataset.shuffle(size, seed=seeding.client_seed(seed, round_num, int(cid)),
                                      reshuffle_each_iteration=False).batch(batch_size))
    return datasets
  return client_data_fn

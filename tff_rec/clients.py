"""Per-user `tf.data` datasets, built on demand (Python orchestrator -> clients).

A user's dataset is cut from the grouped rating arrays only when that user is
sampled, so memory holds the ratings once and never a users x items matrix.
Datasets are a pure function of (user, round, seed): a resumed run feeds the
clients exactly what an uninterrupted run would.
"""

import collections
from collections.abc import Sequence
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_rec import split as split_lib


def _batches(items, ratings, is_test, *, batch_size: int) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=collections.OrderedDict(item=np.asarray(items, np.int32),
                                is_test=np.asarray(is_test, bool)),
      y=np.asarray(ratings, np.float32).reshape(-1, 1))).batch(batch_size)


def user_dataset(part: split_lib.UserRatings, k: int, *, batch_size: int,
                 shuffle_seed: Optional[Sequence[int]] = None) -> tf.data.Dataset:
  """User k's ratings as reconstruction-model batches (optionally permuted)."""
  items, ratings = part.items_of(k), part.ratings_of(k)
  if shuffle_seed is not None:
    order = np.random.default_rng(list(shuffle_seed)).permutation(len(items))
    items, ratings = items[order], ratings[order]
  return _batches(items, ratings, np.zeros(len(items), bool), batch_size=batch_size)


def eval_dataset(train: split_lib.UserRatings, test: split_lib.UserRatings, k: int, *,
                 batch_size: int) -> tf.data.Dataset:
  """User k's train batches (to reconstruct from), then test batches (to score)."""
  recon = _batches(train.items_of(k), train.ratings_of(k),
                   np.zeros(len(train.items_of(k)), bool), batch_size=batch_size)
  scored = _batches(test.items_of(k), test.ratings_of(k),
                    np.ones(len(test.items_of(k)), bool), batch_size=batch_size)
  return recon.concatenate(scored)


def global_user_dataset(part: split_lib.UserRatings, k: int, *, batch_size: int,
                        shuffle_seed: Sequence[int]) -> tf.data.Dataset:
  """User k's ratings for the FedAvg model, which indexes its user table by k."""
  items, ratings = part.items_of(k), part.ratings_of(k)
  order = np.random.default_rng(list(shuffle_seed)).permutation(len(items))
  return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=collections.OrderedDict(user=np.full(len(items), k, np.int32),
                                item=items[order].astype(np.int32)),
      y=ratings[order].astype(np.float32).reshape(-1, 1))).batch(batch_size)


def client_ids(part: split_lib.UserRatings) -> list[str]:
  return [str(u) for u in part.users]


def client_data(part: split_lib.UserRatings, *, batch_size: int) -> tff.simulation.datasets.ClientData:
  """A `ClientData` with one (unshuffled) dataset per user, built lazily."""
  def dataset_fn(client_id: str) -> tf.data.Dataset:
    return user_dataset(part, part.position(int(client_id)), batch_size=batch_size)
  return tff.simulation.datasets.ClientData.from_clients_and_tf_fn(
      client_ids(part), dataset_fn)


def training_data_fn(part: split_lib.UserRatings, *, batch_size: int, seed: int,
                     global_user_table: bool = False):
  """`client_data_fn(sampled_ids, round_num)` for `tff_common.program.run_training`."""
  def client_data_fn(sampled_ids, round_num):
    datasets = []
    for cid in sampled_ids:
      k = part.position(int(cid))
      shuffle = (seed, round_num, k)
      if global_user_table:
        datasets.append(global_user_dataset(part, k, batch_size=batch_size,
                                            shuffle_seed=shuffle))
      else:
        datasets.append(user_dataset(part, k, batch_size=batch_size,
                                     shuffle_seed=shuffle))
    return datasets
  return client_data_fn

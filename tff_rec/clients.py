"""Per-user `tf.data` datasets, built on demand (Python orchestrator -> clients).

A user's dataset is cut from the grouped rating arrays only when that user is
sampled, so memory holds the ratings once and never a users x items matrix.
Datasets are a pure function of (user, round, seed): a resumed run feeds the
clients exactly what an uninterrupted run would.
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_rec import split as split_lib


def _examples(items, ratings, is_test) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=collections.OrderedDict(item=np.asarray(items, np.int32),
                                is_test=np.asarray(is_test, bool)),
      y=np.asarray(ratings, np.float32).reshape(-1, 1)))


def user_examples(part: split_lib.UserRatings, k: int, *,
                  global_user_table: bool = False) -> tf.data.Dataset:
  """User k's ratings, one example each, in stored order.

  For the FedAvg model (`global_user_table`) an example names its user row k
  instead of carrying the `is_test` marker of the reconstruction model.
  """
  items, ratings = part.items_of(k), part.ratings_of(k)
  if not global_user_table:
    return _examples(items, ratings, np.zeros(len(items), bool))
  return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=collections.OrderedDict(user=np.full(len(items), k, np.int32),
                                item=np.asarray(items, np.int32)),
      y=np.asarray(ratings, np.float32).reshape(-1, 1)))


def eval_dataset(train: split_lib.UserRatings, test: split_lib.UserRatings, k: int, *,
                 batch_size: int) -> tf.data.Dataset:
  """User k's train batches (to reconstruct from), then test batches (to score)."""
  recon = _examples(train.items_of(k), train.ratings_of(k),
                    np.zeros(len(train.items_of(k)), bool)).batch(batch_size)
  scored = _examples(test.items_of(k), test.ratings_of(k),
                     np.ones(len(test.items_of(k)), bool)).batch(batch_size)
  return recon.concatenate(scored)


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


def shuffle_seed(seed: int, round_num: int, client_id: str) -> int:
  """The seed of one client's shuffle in one round: a pure function of its inputs."""
  return int(np.random.default_rng([seed, round_num, int(client_id)]).integers(2**31 - 1))


def training_data_fn(part: split_lib.UserRatings, *, batch_size: int, seed: int,
                     global_user_table: bool = False):
  """`client_data_fn(sampled_ids, round_num)` for `tff_common.program.run_training`.

  Each sampled user's examples are shuffled with a seed of (seed, round, user)
  and batched; the order is fixed within the round, so reconstruction and
  training passes see the same batches.
  """
  data = client_data(part, global_user_table=global_user_table)
  counts = dict(zip(client_ids(part), part.counts().tolist()))

  def client_data_fn(sampled_ids, round_num):
    return [data.create_tf_dataset_for_client(cid)
            .shuffle(max(counts[cid], 1), seed=shuffle_seed(seed, round_num, cid),
                     reshuffle_each_iteration=False)
            .batch(batch_size)
            for cid in sampled_ids]
  return client_data_fn

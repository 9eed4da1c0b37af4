"""Shared by the tff_common tests (and their tiny binary): a linear federated
problem and a process check."""

import numpy as np


def linear_model_fn():
  """A `tff.learning` model: a 2-feature linear model starting at zero, MSE."""
  import tensorflow as tf
  import tensorflow_federated as tff

  keras_model = tf.keras.Sequential([tf.keras.layers.Dense(
      1, input_shape=(2,), kernel_initializer='zeros')])
  return tff.learning.models.from_keras_model(
      keras_model, loss=tf.keras.losses.MeanSquaredError(),
      input_spec=(tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 1], tf.float32)))


def linear_process(**kwargs):
  """TFF's weighted FedAvg (client SGD 0.1) of `linear_model_fn`."""
  import tensorflow_federated as tff

  return tff.learning.algorithms.build_weighted_fed_avg(
      linear_model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1), **kwargs)


def linear_datasets(ids, round_num, *, examples: int = 16, overflow: bool = False):
  """One dataset per client id 'c<k>', a pure function of (k, round):
  y = x . (1, -2) + 0.5 in batches of 4; with `overflow`, one feature value
  whose square does not fit float32."""
  import tensorflow as tf
  datasets = []
  for cid in ids:
    rng = np.random.default_rng([int(cid[1:]), round_num])
    x = rng.normal(size=(examples, 2)).astype(np.float32)
    if overflow:
      x[0, 0] = 3e38  # finite in float32; its square is not
    y = (x @ np.array([[1.0], [-2.0]], np.float32) + 0.5).astype(np.float32)
    datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
  return datasets


def pid_alive(pid: int) -> bool:
  """Whether `pid` runs (a zombie, exited but not reaped, does not count)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      state = f.read().split(')')[-1].split()[0]
  except FileNotFoundError:
    return False
  return state != 'Z'

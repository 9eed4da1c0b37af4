"""The federated learning processes: Federated Reconstruction and the FedAvg comparison.

Federated Reconstruction (Singhal et al. 2021): each round the server
broadcasts the global item parameters; each sampled client (1) rebuilds its
user parameters (both heads, `model.py`) from zero on its own examples (its
ratings and the unrated items it sampled) with the item parameters frozen,
(2) trains the item parameters with its user parameters frozen, and (3) sends
only the item-parameter delta. User parameters never leave the device and are
not kept between rounds. The server averages the deltas (weighted by the
client's examples) through `tff_common.aggregation` and applies them with its
optimizer.

FedAvg over a global user table is here for comparison only: every user's
row is part of the broadcast model and of every client's update, so the
server receives (and keeps) every participating user's parameters.
"""

import functools
from typing import Any

import tensorflow as tf
import tensorflow_federated as tff

from tff_common import aggregation
from tff_rec import model as model_lib


def _is_test_batch(batch) -> tf.Tensor:
  return tf.reduce_any(batch['x']['is_test'])


def training_split_fn(*, recon_epochs: int):
  """Reconstruct on `recon_epochs` passes over the user's ratings, then train on one."""
  def split(dataset):
    return dataset.repeat(recon_epochs), dataset
  return split


def evaluation_split_fn(*, recon_epochs: int):
  """Reconstruct on the user's train batches, score the test batches."""
  def split(dataset):
    recon = dataset.filter(lambda b: tf.logical_not(_is_test_batch(b)))
    return recon.repeat(recon_epochs), dataset.filter(_is_test_batch)
  return split


def build_fed_recon(*, model_fn, client_lr: float, server_lr: float, recon_lr: float,
                    recon_epochs: int, implicit_weight: float = 0.0,
                    aggregator: str = 'mean') -> tff.learning.templates.LearningProcess:
  return tff.learning.algorithms.build_fed_recon(
      model_fn=model_fn,
      loss_fn=model_lib.loss_fn(implicit_weight),
      metrics_fn=functools.partial(model_lib.metrics_fn, implicit=implicit_weight > 0),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=server_lr),
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=client_lr),
      reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=recon_lr),
      dataset_split_fn=training_split_fn(recon_epochs=recon_epochs),
      model_aggregator_factory=aggregation.build_aggregator(aggregator, weighted=True))


def build_fed_recon_eval(*, model_fn, recon_lr: float, recon_epochs: int,
                         implicit_weight: float = 0.0) -> tff.learning.templates.LearningProcess:
  return tff.learning.algorithms.build_fed_recon_eval(
      model_fn=model_fn,
      loss_fn=model_lib.loss_fn(implicit_weight),
      metrics_fn=functools.partial(model_lib.metrics_fn, implicit=implicit_weight > 0),
      reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=recon_lr),
      dataset_split_fn=evaluation_split_fn(recon_epochs=recon_epochs))


def build_fed_avg(*, model_fn, client_lr: float, server_lr: float,
                  aggregator: str = 'mean') -> tff.learning.templates.LearningProcess:
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=client_lr),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=server_lr),
      model_aggregator=aggregation.build_aggregator(aggregator, weighted=True))


def trainable_weights(process: tff.learning.templates.LearningProcess, state: Any) -> list:
  """The global trainable weights in `state`, as a list of arrays."""
  return list(process.get_model_weights(state).trainable)

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
from tff_common import communication
from tff_common import dp
from tff_rec import config as config_lib
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
                    aggregator: aggregation.AggregatorConfig = aggregation.MEAN,
                    dp_aggregator=None) -> tff.learning.templates.LearningProcess:
  """TFF's Federated Reconstruction for the two-head MF model.

  Federated types, with `G` the global weights (item factors and biases of
  both heads, the offset), `S` the server state holding them, and `B` a batch
  of one user's examples (`model.recon_input_spec`):

    initialize: ( -> S@SERVER)
    next:       (<state=S@SERVER, client_data={B*}@CLIENTS>
                 -> <state=S@SERVER, metrics=M@SERVER>)

  In `next` the server broadcasts G; each user (CLIENTS) rebuilds its local
  user parameters from zero over `recon_epochs` passes (G frozen), then
  trains G one pass (user parameters frozen) and returns the delta of G
  weighted by its example count; the aggregator (`tff_common.aggregation`)
  sums the deltas to the SERVER, whose SGD at `server_lr` steps G. The local
  parameters never leave the client and are not kept between rounds.

  With `dp_aggregator` (`tff_common.dp.build_dp_aggregator`), user-level DP:
  each client's delta is clipped and counts once (uniform weighting, as the
  DP mean requires), the server adds the noise, and the clients' training
  metrics are not sent at all (the noise protects the update, not them).
  """
  if dp_aggregator is not None:
    return tff.learning.algorithms.build_fed_recon(
        model_fn=model_fn,
        loss_fn=model_lib.loss_fn(implicit_weight),
        metrics_fn=None,
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=server_lr),
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=client_lr),
        reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=recon_lr),
        dataset_split_fn=training_split_fn(recon_epochs=recon_epochs),
        client_weighting=tff.learning.ClientWeighting.UNIFORM,
        model_aggregator_factory=dp_aggregator,
        metrics_aggregator=aggregation.metrics_aggregator(aggregator, release=False))
  return tff.learning.algorithms.build_fed_recon(
      model_fn=model_fn,
      loss_fn=model_lib.loss_fn(implicit_weight),
      metrics_fn=functools.partial(model_lib.metrics_fn, implicit=implicit_weight > 0),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=server_lr),
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=client_lr),
      reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=recon_lr),
      dataset_split_fn=training_split_fn(recon_epochs=recon_epochs),
      model_aggregator_factory=aggregation.build_aggregator(aggregator, weighted=True),
      metrics_aggregator=aggregation.metrics_aggregator(aggregator))


def build_fed_recon_eval(*, model_fn, recon_lr: float, recon_epochs: int,
                         implicit_weight: float = 0.0) -> tff.learning.templates.LearningProcess:
  """TFF's evaluation of a reconstruction model: same types as `build_fed_recon`.

  In `next` the server broadcasts G (set with `set_model_weights`); each user
  rebuilds its parameters from its train batches (`is_test` false), scores
  its test batches and returns only metric sums, which the SERVER finalizes
  into M (RMSE, MAE, and with the implicit head the rated loss). G is not
  changed.
  """
  return tff.learning.algorithms.build_fed_recon_eval(
      model_fn=model_fn,
      loss_fn=model_lib.loss_fn(implicit_weight),
      metrics_fn=functools.partial(model_lib.metrics_fn, implicit=implicit_weight > 0),
      reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=recon_lr),
      dataset_split_fn=evaluation_split_fn(recon_epochs=recon_epochs))


def build_fed_avg(*, model_fn, client_lr: float, server_lr: float,
                  aggregator: aggregation.AggregatorConfig = aggregation.MEAN
                  ) -> tff.learning.templates.LearningProcess:
  """TFF's example-weighted FedAvg over the whole model, user tables included.

  Federated types as in `build_fed_recon`, with `G` every weight of the model
  (`model.global_input_spec` batches name their user row): the server
  broadcasts G, each user trains all of it locally and returns its delta, so
  the server receives every participating user's parameters. A comparison,
  not a deployment.
  """
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=client_lr),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=server_lr),
      model_aggregator=aggregation.build_aggregator(aggregator, weighted=True),
      metrics_aggregator=aggregation.metrics_aggregator(aggregator))


def trainable_weights(process: tff.learning.templates.LearningProcess, state: Any) -> list:
  """The global trainable weights in `state`, as a list of arrays."""
  return list(process.get_model_weights(state).trainable)


def build_process(split, config: config_lib.TrainConfig, *, noise_multiplier: float = 0.0):
  """The learning process of `config.algorithm` on `split`, and the layer name
  of each of its trainable weights (for `params.from_weights`).

  Under differential privacy (`config.dp_enabled`), `noise_multiplier` is the
  resolved one (`tff_common.dp.client_level_guarantee`: calibrated when the
  config gives a target epsilon)."""
  common = config.model_kwargs(split)
  if config.algorithm == 'fedrecon':
    dp_aggregator = None
    if config.dp_enabled:
      dp_aggregator = dp.build_dp_aggregator(
          noise_multiplier=noise_multiplier, clip=config.dp_clip,
          clients_per_round=min(config.clients_per_round or len(split.train), len(split.train)),
          aggregator=config, seed=config.seed)
    process = build_fed_recon(
        model_fn=model_lib.reconstruction_model_fn(**common),
        client_lr=config.client_lr, server_lr=config.effective_server_lr(),
        recon_lr=config.recon_lr, recon_epochs=config.recon_epochs,
        implicit_weight=config.loss_weight(), aggregator=config, dp_aggregator=dp_aggregator)
    return process, list(model_lib.global_names(config.implicit))
  if config.algorithm == 'fedavg':
    process = build_fed_avg(
        model_fn=model_lib.global_model_fn(num_users=len(split.train),
                                           implicit_weight=config.loss_weight(), **common),
        client_lr=config.client_lr, server_lr=config.effective_server_lr(),
        aggregator=config)
    keras_model = model_lib.build_keras_model(num_users=len(split.train),
                                              with_user_input=True, **common)
    return process, model_lib.variable_layers(keras_model)
  raise ValueError(f'{config.algorithm!r} is not a federated algorithm')


def build_eval_process(split, config: config_lib.TrainConfig):
  """`build_fed_recon_eval` for a model trained with `config` on `split`."""
  return build_fed_recon_eval(
      model_fn=model_lib.reconstruction_model_fn(**config.model_kwargs(split)),
      recon_lr=config.recon_lr, recon_epochs=config.recon_epochs,
      implicit_weight=config.loss_weight())


def wire(config: config_lib.TrainConfig) -> communication.Wire:
  """The encoding of the messages of `build_process(split, config)`: both
  processes weight each client's update by its example count, except under
  differential privacy (uniform: no weight is sent)."""
  return communication.Wire(aggregator=config, weighted=not config.dp_enabled)

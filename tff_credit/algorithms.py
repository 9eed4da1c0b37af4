"""The federated algorithms for the scorecard, as TFF learning processes.

`build_process` returns a `tff.learning.templates.LearningProcess` whose `next`
runs one round: the server broadcasts the model, every sampled bank trains on
its own rows (client work), the server aggregates the updates with the
aggregator chosen in `tff_common.aggregation` and applies its optimizer.

  fedsgd   one full-batch gradient per bank, uniform 1/K mean, server SGD:
           w <- w - server_lr * (1/K) * sum_k grad F_k(w)  (McMahan et al. 2017)
  fedavg   local SGD epochs, mean of model deltas weighted by examples or uniform
  fedprox  fedavg plus a proximal term mu/2 ||w - w_global||^2 on each bank
  fedadam  fedavg with Adam on the server (Reddi et al. 2021)
  fedyogi  fedavg with Yogi on the server
  mime_lite  local SGD with momentum whose momentum is the server's: each bank
           steps with the server's optimizer state, frozen during the round;
           the banks also send their full-batch gradient at the broadcast
           model, whose mean updates that state on the server (Karimireddy
           et al. 2021; TFF's `build_weighted_mime_lite`)

Each process takes the banks' rounds as tf.data datasets, TFF's learning
processes' client data, or (`client_data='tensors'`: fedavg, fedprox, fedadam,
fedyogi, also under bank-level DP) as padded tensors of the same batches
(`tff_credit.tensor_client_work`), which TFF runs several times cheaper.
"""

import dataclasses

import numpy as np
import tensorflow_federated as tff

from tff_common import aggregation
from tff_common import communication
from tff_common import dp
from tff_credit import config as config_lib
from tff_credit import dp_sgd
from tff_credit import poisoning
from tff_credit import tensor_client_work


def build_process(config: config_lib.AlgorithmConfig, model_fn, *,
                  poisoned_updates: bool = False, noise_multiplier: float = 0.0,
                  banks_per_round: int = 1, batch_size: int = 32,
                  seed: int = 0,
                  client_data: str = 'datasets') -> tff.learning.templates.LearningProcess:
  """The learning process of `config.algorithm` for the Keras model of `model_fn`.

  Federated types, with `W` the model weights (`tff.learning.models.ModelWeights`),
  `S` the server state and `B` a batch `(x float32[?, d], y float32[?, 1])`:

    initialize: ( -> S@SERVER)
    next:       (<state=S@SERVER, client_data={B*}@CLIENTS>
                 -> <state=S@SERVER, metrics=M@SERVER>)

  In `next`, the server broadcasts W; each bank (CLIENTS) runs the client work
  (fedsgd: the gradient of its loss over one batch of all its rows; the
  others: local SGD epochs over its batches) and returns its update with a
  weight (its example count, or 1 under `weighting='uniform'`); the
  aggregator sums them to the SERVER, where the optimizer steps W. The
  metrics M are the clients' training metrics, aggregated. TFF's updates
  point like gradients: a FedAvg update is (global model - bank's trained
  model), and the server steps W <- W - server_lr * aggregate (under SGD).

  Args:
    config: The algorithm, weighting, learning rates, server momentum,
      proximal strength and the aggregator (`tff_common.aggregation`).
    model_fn: A no-argument function returning a `tff.learning.models.VariableModel`.
    poisoned_updates: For a simulated poisoning bank (`tff_credit.poisoning`):
      the client data becomes `{<data=B*, factor=float32*>}@CLIENTS` and each
      bank multiplies its update by its factor before the aggregator sees it.
      The process is then composed from TFF's templates around the same client
      work, aggregator and optimizer as TFF's builder (used when False), so
      with every factor 1 it computes the same rounds.
    noise_multiplier: Under differential privacy (`config.dp_enabled`), the
      resolved noise multiplier (calibrated from a target epsilon by
      `tff_credit.training`). `--dp_level=record`: FedAvg whose banks run
      DP-SGD (`tff_credit.dp_sgd.build_process`; client data
      `<batches=B*, seed=int64[2]*>`, expected batch `batch_size`).
      `--dp_level=bank`: the DP mean over banks (`tff_common.dp`), uniform,
      dividing by `banks_per_round`, its noise seeded by `seed`. Either way
      the banks' training metrics are not released.
    client_data: 'datasets' (B* above) or 'tensors': each bank's data is
      `tensor_client_work.data_type`, its round's batches padded into tensors
      (`config_lib.client_data_path` resolves `--client_data`). The same
      rounds for fedavg, fedadam, fedyogi (to float precision); fedprox's
      proximal term there pulls towards the global model, as FedProx's
      mu/2 ||w - w_global||^2 does, where TFF 0.87's own (the datasets path)
      adds mu (w_global - w) to the gradient and pushes away from it.
  """
  if config.algorithm not in config_lib.ALGORITHMS:
    raise ValueError(f'--algorithm must be one of {", ".join(config_lib.ALGORITHMS)}, '
                     f'got {config.algorithm!r}')
  if config.weighting not in config_lib.WEIGHTINGS:
    raise ValueError(f'--weighting must be one of {", ".join(config_lib.WEIGHTINGS)}, '
                     f'got {config.weighting!r}')
  # TFF's SGD without a momentum accumulator unless momentum is asked for.
  momentum = config.server_momentum or None
  if client_data not in ('datasets', 'tensors'):
    raise ValueError(f"client_data must be 'datasets' or 'tensors', got {client_data!r}")
  if client_data == 'tensors':
    reason = config_lib.tensors_unsupported(config)
    if reason or poisoned_updates:
      raise ValueError('--client_data=tensors runs no ' +
                       (reason or 'model-poisoning simulation (config.check refuses it)'))
    return _build_on_tensors(config, model_fn, momentum=momentum,
                             noise_multiplier=noise_multiplier,
                             banks_per_round=banks_per_round, seed=seed)
  if config.dp_enabled and config.dp_level == 'record':
    return dp_sgd.build_process(
        model_fn, client_lr=config.client_lr, server_lr=config.server_lr,
        l2_clip=config.dp_clip, noise_multiplier=noise_multiplier,
        expected_batch_size=batch_size,
        model_aggregator=aggregation.build_aggregator(config, weighted=_weighted(config)),
        release_metrics=False)
  if config.dp_enabled:
    return _build_bank_level_dp(config, model_fn, momentum=momentum,
                                noise_multiplier=noise_multiplier,
                                banks_per_round=banks_per_round, seed=seed)
  if config.algorithm == 'fedsgd':
    # The textbook FedSGD is a uniform mean; --weighting=examples gives the
    # example-weighted variant TFF defaults to.
    uniform = not _weighted(config)
    server_optimizer = tff.learning.optimizers.build_sgdm(config.server_lr, momentum=momentum)
    aggregator = aggregation.build_aggregator(config, weighted=not uniform, ignore_weights=uniform)
    if poisoned_updates:
      return _compose_poisoned(config, model_fn, client_optimizer=None,
                               server_optimizer=server_optimizer, aggregator=aggregator)
    return tff.learning.algorithms.build_fed_sgd(
        model_fn, server_optimizer_fn=server_optimizer, model_aggregator=aggregator,
        metrics_aggregator=aggregation.metrics_aggregator(config))

  weighted = _weighted(config)
  if config.algorithm == 'mime_lite':
    if poisoned_updates:
      raise ValueError('mime_lite runs no model-poisoning simulation (config.check refuses it)')
    return _build_mime_lite(config, model_fn, weighted=weighted)
  client_optimizer = tff.learning.optimizers.build_sgdm(config.client_lr)
  server_optimizer = _server_optimizer(config, momentum)
  aggregator = aggregation.build_aggregator(config, weighted=weighted)
  if poisoned_updates:
    if not weighted:
      # What TFF's unweighted builders do: uniform client weights, weighted API.
      aggregator = tff.aggregators.as_weighted_aggregator(aggregator)
    return _compose_poisoned(config, model_fn, client_optimizer=client_optimizer,
                             server_optimizer=server_optimizer, aggregator=aggregator)

  if config.algorithm == 'fedprox':
    builder = (tff.learning.algorithms.build_weighted_fed_prox if weighted
               else tff.learning.algorithms.build_unweighted_fed_prox)
    return builder(model_fn, proximal_strength=config.mu,
                   client_optimizer_fn=client_optimizer,
                   server_optimizer_fn=server_optimizer, model_aggregator=aggregator,
                   metrics_aggregator=aggregation.metrics_aggregator(config))
  builder = (tff.learning.algorithms.build_weighted_fed_avg if weighted
             else tff.learning.algorithms.build_unweighted_fed_avg)
  return builder(model_fn, client_optimizer_fn=client_optimizer,
                 server_optimizer_fn=server_optimizer, model_aggregator=aggregator,
                 metrics_aggregator=aggregation.metrics_aggregator(config))


# Mime-lite's base optimizer is SGD with momentum (the state the server keeps
# and the banks apply); its momentum when --server_momentum is not given.
MIME_MOMENTUM = 0.9


def _build_mime_lite(config: config_lib.AlgorithmConfig, model_fn, *, weighted: bool):
  """TFF's Mime-lite: base optimizer SGD(momentum) at `client_lr`, server SGD
  step `server_lr`. Both what the banks send (model delta, full gradient)
  go through the run's aggregator, so e.g. secure aggregation covers both.

  Federated type of `next`: as `build_process`, with S also holding the base
  optimizer's state (broadcast with W) and each bank sending two tensors per
  weight (`wire` counts them).
  """
  base = tff.learning.optimizers.build_sgdm(
      config.client_lr, momentum=config.server_momentum or MIME_MOMENTUM)
  server = tff.learning.optimizers.build_sgdm(config.server_lr)
  if weighted:
    return tff.learning.algorithms.build_weighted_mime_lite(
        model_fn, base_optimizer=base, server_optimizer=server,
        model_aggregator=aggregation.build_aggregator(config, weighted=True),
        full_gradient_aggregator=aggregation.build_aggregator(config, weighted=True),
        metrics_aggregator=aggregation.metrics_aggregator(config))
  return tff.learning.algorithms.build_unweighted_mime_lite(
      model_fn, base_optimizer=base, server_optimizer=server,
      model_aggregator=aggregation.build_aggregator(config, weighted=False),
      full_gradient_aggregator=aggregation.build_aggregator(config, weighted=False),
      metrics_aggregator=aggregation.metrics_aggregator(config))


def _server_optimizer(config, momentum):
  """The server optimizer of the FedAvg family: Adam, Yogi, or SGD(M)."""
  if config.algorithm == 'fedadam':
    return tff.learning.optimizers.build_adam(config.server_lr)
  if config.algorithm == 'fedyogi':
    return tff.learning.optimizers.build_yogi(config.server_lr)
  return tff.learning.optimizers.build_sgdm(config.server_lr, momentum=momentum)


def _build_bank_level_dp(config, model_fn, *, momentum, noise_multiplier, banks_per_round,
                         seed):
  """TFF's builders with the DP mean over banks (uniform: a weight would scale
  one bank's influence beyond the clip) and no released training metrics."""
  dp_mean = dp.build_dp_aggregator(noise_multiplier=noise_multiplier, clip=config.dp_clip,
                                   clients_per_round=banks_per_round, aggregator=config,
                                   seed=seed, adaptive_quantile=config.dp_adaptive_quantile,
                                   adaptive_lr=config.dp_adaptive_lr)
  no_metrics = aggregation.metrics_aggregator(config, release=False)
  if config.algorithm == 'fedsgd':
    return tff.learning.algorithms.build_fed_sgd(
        model_fn,
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(config.server_lr, momentum=momentum),
        model_aggregator=tff.aggregators.as_weighted_aggregator(dp_mean),
        metrics_aggregator=no_metrics)
  client_optimizer = tff.learning.optimizers.build_sgdm(config.client_lr)
  server_optimizer = _server_optimizer(config, momentum)
  if config.algorithm == 'fedprox':
    return tff.learning.algorithms.build_unweighted_fed_prox(
        model_fn, proximal_strength=config.mu, client_optimizer_fn=client_optimizer,
        server_optimizer_fn=server_optimizer, model_aggregator=dp_mean,
        metrics_aggregator=no_metrics)
  return tff.learning.algorithms.build_unweighted_fed_avg(
      model_fn, client_optimizer_fn=client_optimizer, server_optimizer_fn=server_optimizer,
      model_aggregator=dp_mean, metrics_aggregator=no_metrics)


def _build_on_tensors(config, model_fn, *, momentum, noise_multiplier, banks_per_round, seed):
  """The FedAvg family on padded tensors (`tensor_client_work.build_process`),
  with the aggregator, weighting and metrics TFF's builders get above: under
  bank-level DP the uniform DP mean and no released metrics."""
  if config.dp_enabled:
    aggregator = dp.build_dp_aggregator(noise_multiplier=noise_multiplier, clip=config.dp_clip,
                                        clients_per_round=banks_per_round, aggregator=config,
                                        seed=seed)
    weighted, metrics = False, aggregation.metrics_aggregator(config, release=False)
  else:
    weighted = _weighted(config)
    aggregator = aggregation.build_aggregator(config, weighted=weighted)
    metrics = aggregation.metrics_aggregator(config)
  if not weighted:
    # What TFF's unweighted builders do: uniform client weights, weighted API.
    aggregator = tff.aggregators.as_weighted_aggregator(aggregator)
  return tensor_client_work.build_process(
      model_fn, client_lr=config.client_lr,
      server_optimizer=_server_optimizer(config, momentum), model_aggregator=aggregator,
      weighting=(tff.learning.ClientWeighting.NUM_EXAMPLES if weighted
                 else tff.learning.ClientWeighting.UNIFORM),
      proximal_strength=config.mu if config.algorithm == 'fedprox' else 0.0,
      metrics_aggregator=metrics)


def _compose_poisoned(config: config_lib.AlgorithmConfig, model_fn, *, client_optimizer,
                      server_optimizer, aggregator) -> tff.learning.templates.LearningProcess:
  """TFF's builder of `config.algorithm`, with its client work wrapped by
  `poisoning.build_poisoned_client_work`: the same four parts (broadcast,
  client work, the weighted-API `aggregator`, the optimizer's finalizer)
  composed by `tff.learning.templates.compose_learning_process`, as TFF's
  `build_weighted_fed_avg`, `build_weighted_fed_prox` and `build_fed_sgd` do."""

  @tff.tensorflow.computation()
  def initial_model_weights_fn():
    return tff.learning.models.ModelWeights.from_model(model_fn())

  model_weights_type = initial_model_weights_fn.type_signature.result
  metrics_aggregator = aggregation.metrics_aggregator(config)
  if config.algorithm == 'fedsgd':
    # TFF exports no builder for FedSGD's client work; this is the one its
    # `build_fed_sgd` uses (private in TFF 0.87, pinned by requirements-lock.txt).
    inner = tff.learning.algorithms.fed_sgd._build_fed_sgd_client_work(
        model_fn, metrics_aggregator)
  else:
    weighting = (tff.learning.ClientWeighting.NUM_EXAMPLES if _weighted(config)
                 else tff.learning.ClientWeighting.UNIFORM)
    if config.algorithm == 'fedprox':
      inner = tff.learning.templates.proximal_client_work.build_model_delta_client_work(
          model_fn=model_fn, optimizer=client_optimizer, client_weighting=weighting,
          delta_l2_regularizer=config.mu, metrics_aggregator=metrics_aggregator,
          loop_implementation=tff.learning.LoopImplementation.DATASET_REDUCE)
    else:
      inner = tff.learning.templates.build_model_delta_client_work(
          model_fn=model_fn, optimizer=client_optimizer, client_weighting=weighting,
          metrics_aggregator=metrics_aggregator)
  return tff.learning.templates.compose_learning_process(
      initial_model_weights_fn,
      tff.learning.templates.build_broadcast_process(model_weights_type),
      poisoning.build_poisoned_client_work(inner),
      aggregator.create(model_weights_type.trainable, tff.TensorType(np.float32)),
      tff.learning.templates.build_apply_optimizer_finalizer(server_optimizer,
                                                             model_weights_type))


def wire(config: config_lib.AlgorithmConfig) -> communication.Wire:
  """The encoding of the process's messages (what `tff_common.communication` counts)."""
  bank_level_dp = config.dp_enabled and config.dp_level == 'bank'
  weighted = _weighted(config) and not bank_level_dp
  if config.algorithm == 'mime_lite':
    return _MimeWire(aggregator=config, weighted=weighted)
  return communication.Wire(aggregator=config, weighted=weighted)


@dataclasses.dataclass(frozen=True)
class _MimeWire(communication.Wire):
  """Mime-lite's messages: down, the model and the base optimizer's momentum
  (one tensor per trainable weight); up, the model delta and the full
  gradient, each through the aggregator (with its weight, if weighted)."""

  def per_client(self, model_weights) -> tuple[int, int]:
    down, up = super().per_client(model_weights)
    momentum = sum(np.asarray(w).nbytes for w in model_weights.trainable)
    return down + momentum, 2 * up


def _weighted(config: config_lib.AlgorithmConfig) -> bool:
  """Whether banks send their example count with their update."""
  return config.weighting == 'examples'

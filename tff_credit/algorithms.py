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
"""

import tensorflow_federated as tff

from tff_common import aggregation
from tff_common import communication
from tff_credit import config as config_lib


def build_process(config: config_lib.AlgorithmConfig,
                  model_fn) -> tff.learning.templates.LearningProcess:
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
  metrics M are the clients' training metrics, aggregated.

  Args:
    config: The algorithm, weighting, learning rates, server momentum,
      proximal strength and the aggregator (`tff_common.aggregation`).
    model_fn: A no-argument function returning a `tff.learning.models.VariableModel`.
  """
  if config.algorithm not in config_lib.ALGORITHMS:
    raise ValueError(f'--algorithm must be one of {", ".join(config_lib.ALGORITHMS)}, '
                     f'got {config.algorithm!r}')
  if config.weighting not in config_lib.WEIGHTINGS:
    raise ValueError(f'--weighting must be one of {", ".join(config_lib.WEIGHTINGS)}, '
                     f'got {config.weighting!r}')
  # TFF's SGD without a momentum accumulator unless momentum is asked for.
  momentum = config.server_momentum or None
  if config.algorithm == 'fedsgd':
    # The textbook FedSGD is a uniform mean; --weighting=examples gives the
    # example-weighted variant TFF defaults to.
    uniform = not _weighted(config)
    return tff.learning.algorithms.build_fed_sgd(
        model_fn,
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(config.server_lr,
                                                                momentum=momentum),
        model_aggregator=aggregation.build_aggregator(
            config, weighted=not uniform, ignore_weights=uniform))

  client_optimizer = tff.learning.optimizers.build_sgdm(config.client_lr)
  if config.algorithm == 'fedadam':
    server_optimizer = tff.learning.optimizers.build_adam(config.server_lr)
  elif config.algorithm == 'fedyogi':
    server_optimizer = tff.learning.optimizers.build_yogi(config.server_lr)
  else:
    server_optimizer = tff.learning.optimizers.build_sgdm(config.server_lr, momentum=momentum)
  weighted = _weighted(config)
  aggregator = aggregation.build_aggregator(config, weighted=weighted)

  if config.algorithm == 'fedprox':
    builder = (tff.learning.algorithms.build_weighted_fed_prox if weighted
               else tff.learning.algorithms.build_unweighted_fed_prox)
    return builder(model_fn, proximal_strength=config.mu,
                   client_optimizer_fn=client_optimizer,
                   server_optimizer_fn=server_optimizer, model_aggregator=aggregator)
  builder = (tff.learning.algorithms.build_weighted_fed_avg if weighted
             else tff.learning.algorithms.build_unweighted_fed_avg)
  return builder(model_fn, client_optimizer_fn=client_optimizer,
                 server_optimizer_fn=server_optimizer, model_aggregator=aggregator)


def wire(config: config_lib.AlgorithmConfig) -> communication.Wire:
  """The encoding of the process's messages (what `tff_common.communication` counts)."""
  return communication.Wire(aggregator=config, weighted=_weighted(config))


def _weighted(config: config_lib.AlgorithmConfig) -> bool:
  """Whether banks send their example count with their update."""
  return config.weighting == 'examples'

"""The federated algorithms for the scorecard, as TFF learning processes.

Each builder returns a `tff.learning.templates.LearningProcess`; its `next`
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

import dataclasses

import tensorflow_federated as tff

from tff_common import aggregation

ALGORITHMS = ('fedsgd', 'fedavg', 'fedprox', 'fedadam', 'fedyogi')
WEIGHTINGS = ('examples', 'uniform')


@dataclasses.dataclass
class AlgorithmConfig:
  algorithm: str = 'fedavg'
  weighting: str = 'examples'
  client_lr: float = 0.1
  server_lr: float = 1.0
  mu: float = 0.01
  aggregator: str = 'mean'


def build_process(config: AlgorithmConfig, model_fn) -> tff.learning.templates.LearningProcess:
  if config.algorithm not in ALGORITHMS:
    raise ValueError(f'--algorithm must be one of {", ".join(ALGORITHMS)}, got {config.algorithm!r}')
  if config.weighting not in WEIGHTINGS:
    raise ValueError(f'--weighting must be one of {", ".join(WEIGHTINGS)}, got {config.weighting!r}')
  if config.algorithm == 'fedsgd':
    # The textbook FedSGD is a uniform mean; --weighting=examples gives the
    # example-weighted variant TFF defaults to.
    uniform = config.weighting == 'uniform'
    return tff.learning.algorithms.build_fed_sgd(
        model_fn,
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(config.server_lr),
        model_aggregator=aggregation.build_aggregator(
            config.aggregator, weighted=not uniform, ignore_weights=uniform))

  client_optimizer = tff.learning.optimizers.build_sgdm(config.client_lr)
  if config.algorithm == 'fedadam':
    server_optimizer = tff.learning.optimizers.build_adam(config.server_lr)
  elif config.algorithm == 'fedyogi':
    server_optimizer = tff.learning.optimizers.build_yogi(config.server_lr)
  else:
    server_optimizer = tff.learning.optimizers.build_sgdm(config.server_lr)
  weighted = config.weighting == 'examples'
  aggregator = aggregation.build_aggregator(config.aggregator, weighted=weighted)

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

"""Benchmark: one TFF FedAvg round over the banks vs one Keras epoch on pooled data.

  .venv/bin/python bench/credit_round_cost.py [--rounds=10]

Both do the same arithmetic (one pass of minibatch SGD over every training row,
batch 32, logistic regression); the ratio is TFF's orchestration overhead on
this machine. Prints figures measured in this run; asserts nothing.
"""

import time

from absl import flags

from tff_common import cli

_ROUNDS = flags.DEFINE_integer('rounds', 10, 'Rounds (and epochs) to time.')
_BANKS = flags.DEFINE_integer('banks', 5, 'Banks.')


def main(argv):
  del argv
  import numpy as np

  from tff_credit import algorithms
  from tff_credit import config
  from tff_credit import evaluation
  from tff_credit import federation
  from tff_credit import model
  from tff_credit import training
  fed = federation.build_federation(config.DataConfig(banks=_BANKS.value, partition='iid'))
  model_fn = model.model_fn_for(model='logreg', num_features=fed.num_features)
  process = algorithms.build_process(config.AlgorithmConfig(), model_fn)
  data_fn = training.client_data_fn_for(fed, algorithm='fedavg', train=config.TrainConfig())
  state = process.initialize()
  state = process.next(state, data_fn(fed.bank_names, 0)).state  # tracing and worker warm-up
  times = []
  for r in range(1, _ROUNDS.value + 1):
    datasets = data_fn(fed.bank_names, r)
    start = time.perf_counter()
    state = process.next(state, datasets).state
    times.append(time.perf_counter() - start)
  x, y = fed.pooled('train')
  evaluation.fit_keras(x=x, y=y, model='logreg', epochs=1, batch_size=32, learning_rate=0.1, seed=0)
  start = time.perf_counter()
  evaluation.fit_keras(x=x, y=y, model='logreg', epochs=_ROUNDS.value, batch_size=32,
                       learning_rate=0.1, seed=0)
  keras_epoch = (time.perf_counter() - start) / _ROUNDS.value
  round_s = float(np.median(times))
  print(f'TFF FedAvg round over {_BANKS.value} banks ({len(y)} rows): median {round_s * 1000:.0f} ms')
  print(f'Keras fit epoch on the pooled rows:                 {keras_epoch * 1000:.0f} ms')
  print(f'ratio TFF round / Keras epoch: {round_s / keras_epoch:.2f}')


if __name__ == '__main__':
  cli.run(main)

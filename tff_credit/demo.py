"""The credit part of `./run.sh`: train with default flags, then evaluate.

  python -m tff_credit.demo --output_dir=runs/credit

Equivalent to `tff_credit.train --output_dir=DIR` followed by
`tff_credit.evaluate --output_dir=DIR` (bundled data, 5 size-skewed banks,
logistic regression, FedAvg), in one process.
"""

import time

from absl import flags

from tff_common import cli
from tff_common import progress
from tff_credit import config
from tff_credit import evaluation
from tff_credit import training

flags.DEFINE_string('output_dir', 'runs/credit', 'Where the run and its report go.')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  started = time.perf_counter()
  log = progress.print_flushed
  log('== Federated credit scoring: 5 banks (size skew), logistic regression, FedAvg ==')
  training.train(data=config.DataConfig(), algorithm=config.AlgorithmConfig(),
                 train_config=config.TrainConfig(), output_dir=FLAGS.output_dir, log=log)
  evaluation.evaluate(output_dir=FLAGS.output_dir, log=log)
  log(f'credit demo: {time.perf_counter() - started:.0f}s')


if __name__ == '__main__':
  cli.run(main)

"""The credit part of `./run.sh`: train with default flags, then evaluate.

  python -m tff_credit.demo --output_dir=runs/credit

Equivalent to `tff_credit.train --output_dir=DIR` followed by
`tff_credit.evaluate --output_dir=DIR` (bundled data, 5 size-skewed banks,
logistic regression, FedAvg), in one process.
"""

import time

from absl import flags

from tff_common import cli

_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'runs/credit', 'Where the run and its report go.')


def main(argv):
  del argv
  # pylint: disable=g-import-not-at-top
  from tff_common import program
  from tff_credit import algorithms
  from tff_credit import evaluation
  from tff_credit import federation
  from tff_credit import training
  # pylint: enable=g-import-not-at-top
  started = time.perf_counter()
  log = program.print_flushed
  log('== Federated credit scoring: 5 banks (size skew), logistic regression, FedAvg ==')
  training.train(data=federation.DataConfig(), algorithm=algorithms.AlgorithmConfig(),
                 train_config=training.TrainConfig(), output_dir=_OUTPUT_DIR.value, log=log)
  evaluation.evaluate(output_dir=_OUTPUT_DIR.value, log=log)
  log(f'credit demo: {time.perf_counter() - started:.0f}s')


if __name__ == '__main__':
  cli.run(main)

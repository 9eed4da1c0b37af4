"""Compares the federated scorecard with local-only and pooled training.

  python -m tff_credit.evaluate --output_dir=/tmp/credit

Reads the run in --output_dir (written by `tff_credit.train`) and writes
report.md, roc.png and summary.json there; prints the report.
"""

from absl import flags

from tff_common import cli

_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'The --output_dir of a finished training run.', required=True)


def main(argv):
  del argv
  from tff_common import runtime  # pylint: disable=g-import-not-at-top
  from tff_credit import evaluation  # pylint: disable=g-import-not-at-top
  runtime.install_execution_context()
  evaluation.evaluate(output_dir=_OUTPUT_DIR.value)


if __name__ == '__main__':
  cli.run(main)

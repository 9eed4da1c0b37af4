"""Compares the federated scorecard with local-only and pooled training.

  python -m tff_credit.evaluate --output_dir=/tmp/credit

Reads the run in --output_dir (written by `tff_credit.train`) and writes
report.md, roc.png and summary.json there; prints the report.
"""

from absl import flags

from tff_common import cli
from tff_credit import evaluation
from tff_credit import flags as credit_flags
from tff_credit import personalization

credit_flags.define_output_dir()
credit_flags.define_personalize_flags()
flags.adopt_module_key_flags(credit_flags)  # so that --help lists them
FLAGS = flags.FLAGS


def main(argv):
  del argv
  personalize = cli.config_from_flags(personalization.PersonalizeConfig)
  personalize.check()  # before anything is read or written
  evaluation.evaluate(output_dir=FLAGS.output_dir, personalize=personalize)


if __name__ == '__main__':
  # The baselines are Keras and scoring is NumPy: no federated computation.
  cli.run(main, federated=False)

r"""Trains a credit scorecard federatedly across banks.

  python -m tff_credit.train --output_dir=/tmp/credit
  python -m tff_credit.train --output_dir=/tmp/x --data=loans.csv \
      --label_column=default --positive_label=yes --partition=label_skew --alpha=0.3

  python -m tff_credit.train --output_dir=/tmp/m --algorithm=mime_lite --l2=0.001

Each bank holds out --val_fraction of its training rows; model.npz is the
round with the best federated validation AUC (--select=best) and
model_last.npz the last round's (--select=last: the other way round).
Rerunning the same command after an interruption resumes from the last
checkpoint. See `tff_credit.training` for what is written to --output_dir.
"""

from absl import flags

from tff_common import cli
from tff_credit import flags as credit_flags
from tff_credit import training

credit_flags.define_output_dir()
credit_flags.define_data_flags()
credit_flags.define_algorithm_flags()
credit_flags.define_train_flags()
flags.adopt_module_key_flags(credit_flags)  # so that --help lists them
FLAGS = flags.FLAGS


def main(argv):
  del argv
  data, algorithm, train_config = credit_flags.configs()
  training.train(data=data, algorithm=algorithm, train_config=train_config,
                 output_dir=FLAGS.output_dir)


if __name__ == '__main__':
  cli.run(main)

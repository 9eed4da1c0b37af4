r"""Trains a recommender on MovieLens: Federated Reconstruction, FedAvg or centralized.

    python -m tff_rec.train --output_dir=runs/rec                  # fedrecon, bundled data
    python -m tff_rec.train --output_dir=runs/rec --algorithm=fedavg
    python -m tff_rec.train --output_dir=runs/rec --data=ml-1m/ratings.dat

Rerunning the same command resumes from the newest checkpoint; a larger
--rounds trains further. The data flags are stored in OUTPUT_DIR/data.json, so
every algorithm trained into one directory sees the same split.
"""

from absl import flags

from tff_common import cli
from tff_common import seeding
from tff_rec import flags as rec_flags

rec_flags.define_output_dir()
rec_flags.define_data_flags()
rec_flags.define_training_flags()
rec_flags.define_seed()
flags.adopt_module_key_flags(rec_flags)  # so that --help lists them
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from tff_rec import training  # pylint: disable=g-import-not-at-top
  # The global seed is part of a run's definition: with it, TF derives the
  # clients' shuffle orders from their op seeds.
  seeding.set_seed(FLAGS.seed)
  training.train(data_config=rec_flags.data_config(FLAGS),
                 train_config=rec_flags.train_config(FLAGS), output_dir=FLAGS.output_dir)


if __name__ == '__main__':
  cli.run(main)

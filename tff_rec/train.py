r"""Trains a recommender on MovieLens: Federated Reconstruction, FedAvg or centralized.

    python -m tff_rec.train --output_dir=runs/rec                  # fedrecon, bundled data
    python -m tff_rec.train --output_dir=runs/rec --algorithm=fedavg
    python -m tff_rec.train --output_dir=runs/rec --data=ml-1m/ratings.dat

Rerunning the same command resumes from the newest checkpoint; a larger
--rounds trains further. The data flags are stored in OUTPUT_DIR/config.json,
so every algorithm trained into one directory sees the same split.
"""

from absl import flags

from tff_common import cli
from tff_rec import flags as rec_flags
from tff_rec import training

rec_flags.define_output_dir()
rec_flags.define_data_flags()
rec_flags.define_training_flags()
flags.adopt_module_key_flags(rec_flags)  # so that --help lists them
FLAGS = flags.FLAGS


def main(argv):
  del argv
  training.train(data_config=rec_flags.data_config(), train_config=rec_flags.train_config(),
                 output_dir=FLAGS.output_dir)


if __name__ == '__main__':
  cli.run(main)

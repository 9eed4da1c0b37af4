r"""Prints a user's top-N unrated movies, their factors rebuilt on the device.

    python -m tff_rec.recommend --output_dir=runs/rec --user=15 --n=10
    python -m tff_rec.recommend --output_dir=runs/rec --user=15 --personalize=finetune

Uses the global item parameters released by training (--algorithm, default
fedrecon) and the user's own ratings only.
"""

from absl import flags

from tff_common import cli
from tff_common import progress
from tff_rec import config
from tff_rec import flags as rec_flags
from tff_rec import topn

rec_flags.define_output_dir()
flags.DEFINE_integer('user', None, 'MovieLens user id.', required=True)
flags.DEFINE_integer('n', 10, 'How many movies to recommend.')
flags.DEFINE_enum('algorithm', 'fedrecon', config.ALGORITHMS,
                  'Whose released item parameters to use.')
rec_flags.define_personalize_flags(single=True)
flags.adopt_module_key_flags(rec_flags)  # so that --help lists them
FLAGS = flags.FLAGS


def main(argv):
  del argv
  recommendations, rated, ranked_by = topn.recommend(
      FLAGS.output_dir, user=FLAGS.user, n=FLAGS.n, algorithm=FLAGS.algorithm,
      personalize=rec_flags.personalize_config())
  progress.print_flushed(topn.format_table(recommendations, user=FLAGS.user, rated=rated,
                          algorithm=FLAGS.algorithm, ranked_by=ranked_by))


if __name__ == '__main__':
  # Reconstruction and ranking are NumPy, on the device: no federated computation.
  cli.run(main, federated=False)

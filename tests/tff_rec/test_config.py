"""tff_rec.config: settings stored by older versions of tff_rec load, or are refused."""

import dataclasses
import json

import pytest

from tff_common import errors
from tff_common import run_dir
from tff_rec import config as config_lib


# train_config.json is the name older versions stored a run's settings under.
@pytest.mark.parametrize('file_name', ['train_config.json', run_dir.CONFIG])
def test_train_configs_of_older_versions_load_or_are_refused(tmp_path, file_name):
  root = run_dir.RunDir(str(tmp_path))
  def stored(**values):
    run = tmp_path / 'fedrecon'
    run.mkdir(exist_ok=True)
    (run / file_name).write_text(json.dumps(values))
    return root
  # Before implicit feedback: a rating-only model, reconstructed as it was trained.
  config = config_lib.read_train_config(stored(algorithm='fedrecon', batch_size=16), 'fedrecon')
  assert not config.implicit and config.examples_per_batch() == 16
  assert config.recon().negatives_per_rating == 0 and config.recon().implicit_weight == 0
  config = config_lib.read_train_config(
      stored(algorithm='fedrecon', negatives_per_rating=0.0, negative_weight=0.0), 'fedrecon')
  assert not config.implicit
  # Imputed negative ratings (the old scheme) cannot be evaluated as either head.
  with pytest.raises(errors.InputError, match='older tff_rec'):
    config_lib.read_train_config(
        stored(algorithm='fedrecon', negatives_per_rating=1.0, negative_weight=0.1), 'fedrecon')
  # Older versions stored rounds=None: read as the default.
  config = config_lib.read_train_config(stored(algorithm='fedrecon', rounds=None), 'fedrecon')
  assert config.rounds == config_lib.TrainConfig().rounds
  # Before --client_weighting: example-weighted, whatever today's default, both
  # when read back and when a rerun's settings are claimed against it.
  config = config_lib.read_train_config(stored(algorithm='fedrecon'), 'fedrecon')
  assert config.client_weighting == config_lib.EXAMPLES
  assert config_lib.TrainConfig.predated_defaults()['client_weighting'] == config_lib.EXAMPLES
  old = config_lib.TrainConfig(client_weighting=config_lib.EXAMPLES).settings()
  del old['client_weighting']
  run = run_dir.RunDir(str(tmp_path / 'old_run'))
  run.claim(old)
  # Resumed under today's default weighting: refused, naming it...
  with pytest.raises(errors.InputError, match='client_weighting'):
    run.claim(dataclasses.replace(config_lib.TrainConfig(), client_weighting=config_lib.UNIFORM)
              .settings(), defaults=config_lib.TrainConfig.predated_defaults())
  # ...and resumed as it was trained: accepted.
  run.claim(config_lib.TrainConfig(client_weighting=config_lib.EXAMPLES).settings(),
            defaults=config_lib.TrainConfig.predated_defaults())
  # Either setting at 0 turns the head off everywhere.
  assert config_lib.TrainConfig().implicit
  off = config_lib.TrainConfig(implicit_weight=0.0)
  assert not off.implicit and off.negatives() == 0 and off.examples_per_batch() == 16


# data.json is the name older versions stored the data settings under.
@pytest.mark.parametrize('file_name', ['data.json', run_dir.CONFIG])
def test_data_config_is_read_under_either_name(tmp_path, file_name):
  stored = config_lib.DataConfig(data='ratings.csv', split='temporal', seed=3)
  (tmp_path / file_name).write_text(json.dumps(dataclasses.asdict(stored)))
  assert config_lib.read_data_config(run_dir.RunDir(str(tmp_path))) == stored


@pytest.mark.parametrize('config,message', [
    (config_lib.TrainConfig(rounds=0), '--rounds=0: expected an integer >= 1'),
    (config_lib.TrainConfig(client_lr=0.0), '--client_lr=0.0: expected a number > 0'),
    (config_lib.TrainConfig(server_lr=-3.0), '--server_lr=-3.0: expected a number > 0'),
    (config_lib.TrainConfig(dim=0), '--dim=0: expected an integer >= 1'),
    (config_lib.TrainConfig(implicit_l2=-0.1), '--implicit_l2=-0.1: expected a number >= 0'),
    (config_lib.TrainConfig(aggregator='krum'),
     "--aggregator='krum': expected one of mean, compressed, topk, randk, secure, robust, "
     'median, trimmed_mean, filtered_mean'),
    (config_lib.TrainConfig(algorithm='fedavg', dp_noise_multiplier=1.0),
     "--algorithm='fedavg': expected fedrecon with differential privacy (FedAvg ships user "
     'rows, the centralized baseline pools the ratings)'),
    (config_lib.TrainConfig(aggregator='median', target_epsilon=3.0),
     "--aggregator='median': expected one of mean, secure, compressed, topk with differential "
     "privacy (a robust aggregator's output is not a clipped sum, whose sensitivity the "
     'accounting assumes)'),
    (config_lib.TrainConfig(client_weighting='users'),
     "--client_weighting='users': expected one of examples, uniform, implicit_uniform"),
    (config_lib.DataConfig(heldout_users_fraction=1.0),
     '--heldout_users_fraction=1.0: expected a number in [0, 1)'),
])
def test_settings_out_of_range_are_one_line_naming_the_flag(config, message):
  with pytest.raises(errors.InputError) as raised:
    config.check()
  assert str(raised.value) == message

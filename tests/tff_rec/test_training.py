"""tff_rec.training in process: FedRecon learns, the NumPy evaluation is TFF's,
a resumed run ends where an uninterrupted one does, other settings are refused."""

import math

import numpy as np
import pytest

from tests.tff_rec import helpers
from tff_common import errors
from tff_common import run_dir
from tff_rec import algorithms
from tff_rec import config as config_lib
from tff_rec import evaluation
from tff_rec import params
from tff_rec import reconstruction
from tff_rec import training


def _quiet(line):
  del line


def test_fedrecon_lowers_loss_and_numpy_matches_federated_eval(tiny_split, tmp_path):
  config = helpers.tiny_config(rounds=12)
  data_config = config_lib.DataConfig()
  trained = training.train(data_config=data_config, train_config=config, split=tiny_split,
                           output_dir=str(tmp_path), log=_quiet)
  run = run_dir.RunDir(str(tmp_path)).child('fedrecon')
  rounds, test_rmse = run.curve(evaluation.TEST_RMSE)
  first = np.mean(test_rmse[:2])
  last = np.mean(test_rmse[-2:])
  assert len(rounds) == 12 and last < first
  _, loss = run.training_loss()
  assert loss[-1] < loss[0]
  # The on-device (NumPy) reconstruction is the one TFF's evaluation runs.
  federated = evaluation.federated_rating_metrics(
      eval_process=algorithms.build_eval_process(tiny_split, config),
      weights=params.global_weights(trained), train=tiny_split.train, test=tiny_split.test,
      recon=config.recon(), num_items=tiny_split.num_items)
  users = reconstruction.reconstruct_part(trained, tiny_split.train, config.recon())
  local = evaluation.rating_metrics(trained, users, tiny_split.test)
  assert federated['rmse'] == pytest.approx(local['rmse'], abs=1e-4)
  assert federated['mae'] == pytest.approx(local['mae'], abs=1e-4)
  # ...for the implicit head too (what ranking uses; RMSE does not see it).
  assert federated['rated_loss'] == pytest.approx(
      evaluation.rated_loss(trained, users, tiny_split.test), abs=1e-4)
  assert np.abs(users.s).max() > 0.01
  arrays, metadata = run.load_model()
  assert metadata['privacy'] == {'differential_privacy': 'none'}
  saved = params.from_arrays(arrays)
  np.testing.assert_array_equal(saved.item_factors, trained.item_factors)


def test_resumed_training_ends_equal_to_uninterrupted(tiny_split, tmp_path):
  data_config = config_lib.DataConfig()
  quiet = dict(data_config=data_config, split=tiny_split, log=_quiet)
  full = training.train(train_config=helpers.tiny_config(rounds=4),
                        output_dir=str(tmp_path / 'a'), **quiet)
  training.train(train_config=helpers.tiny_config(rounds=2), output_dir=str(tmp_path / 'b'),
                 **quiet)
  lines = []
  resumed = training.train(train_config=helpers.tiny_config(rounds=4),
                           output_dir=str(tmp_path / 'b'), **{**quiet, 'log': lines.append})
  assert any('resuming from the checkpoint of round 2' in line for line in lines)
  np.testing.assert_allclose(resumed.item_factors, full.item_factors, atol=1e-6)
  np.testing.assert_allclose(resumed.item_bias, full.item_bias, atol=1e-6)
  # Other hyperparameters in the same directory are refused, not mixed.
  with pytest.raises(errors.InputError, match='client_lr'):
    training.train(train_config=helpers.tiny_config(rounds=5, client_lr=0.5),
                   output_dir=str(tmp_path / 'b'), **quiet)


def test_a_dp_run_states_its_epsilon_and_resumes_with_the_same_noise(tiny_split, tmp_path):
  # User-level DP: clipped updates, server noise seeded from the state,
  # Poisson sampling.
  def dp_config(rounds, **overrides):
    return helpers.tiny_config(rounds=rounds, dp_clip=0.5, client_sampling='poisson',
                               server_lr=1.0, **{'dp_noise_multiplier': 1.0, **overrides})
  quiet = dict(data_config=config_lib.DataConfig(), split=tiny_split, log=_quiet)
  lines = []
  full = training.train(train_config=dp_config(3), output_dir=str(tmp_path / 'a'),
                        **{**quiet, 'log': lines.append})
  training.train(train_config=dp_config(1), output_dir=str(tmp_path / 'b'), **quiet)
  resumed = training.train(train_config=dp_config(3), output_dir=str(tmp_path / 'b'), **quiet)
  np.testing.assert_allclose(resumed.item_factors, full.item_factors, atol=1e-6)
  run = run_dir.RunDir(str(tmp_path / 'a')).child('fedrecon')
  guarantee = run.load_model()[1]['privacy']
  assert guarantee['differential_privacy'] == 'user-level'
  assert guarantee['noise_multiplier'] == 1.0 and guarantee['sampling'] == 'poisson'
  assert guarantee['population'] == len(tiny_split.train) and guarantee['steps'] == 3
  assert 0 < guarantee['epsilon'] < 100
  assert any(line.startswith('fedrecon: privacy: user-level (ε=') for line in lines)
  # Under DP the clients' training metrics are not released (only the
  # orchestrator's test RMSE, a simulation measurement, is).
  assert run.training_loss() == ([], [])
  assert len(run.curve(evaluation.TEST_RMSE)[0]) == 3
  # A target epsilon calibrates the noise for the run's rounds: training the
  # same directory further would change the noise, and is refused.
  training.train(train_config=dp_config(2, dp_noise_multiplier=0.0, target_epsilon=20.0),
                 output_dir=str(tmp_path / 'd'), **quiet)
  epsilon = run_dir.RunDir(str(tmp_path / 'd')).child('fedrecon').load_model()[1]['privacy']
  assert 0.99 * 20 <= epsilon['epsilon'] <= 20
  with pytest.raises(errors.InputError, match='noise_multiplier_in_use'):
    training.train(train_config=dp_config(3, dp_noise_multiplier=0.0, target_epsilon=20.0),
                   output_dir=str(tmp_path / 'd'), **quiet)


def test_an_adaptive_dp_run_records_its_epsilon_and_resumes_with_the_same_noise(
    tiny_split, tmp_path):
  # Adaptive clipping (tff_common.dp): the clip and both noises' seeds are in
  # the aggregator's state, so a resumed run ends where an uninterrupted one
  # does (the clip starts at 0.05, below every update: it moves every round).
  def adaptive(rounds):
    return helpers.tiny_config(rounds=rounds, dp_clip=0.05, dp_adaptive_quantile=0.5,
                               client_sampling='poisson', server_lr=1.0,
                               dp_noise_multiplier=0.1)
  quiet = dict(data_config=config_lib.DataConfig(), split=tiny_split, log=_quiet)
  full = training.train(train_config=adaptive(2), output_dir=str(tmp_path / 'a'), **quiet)
  training.train(train_config=adaptive(1), output_dir=str(tmp_path / 'b'), **quiet)
  resumed = training.train(train_config=adaptive(2), output_dir=str(tmp_path / 'b'), **quiet)
  np.testing.assert_allclose(resumed.item_factors, full.item_factors, atol=1e-6)
  run = run_dir.RunDir(str(tmp_path / 'a')).child('fedrecon')
  guarantee = run.load_model()[1]['privacy']
  assert guarantee['noise_multiplier'] == 0.1 and 0 < guarantee['epsilon'] < math.inf
  assert guarantee['clip_norm'] is None
  assert guarantee['adaptive_clipping']['target_quantile'] == 0.5
  assert guarantee['adaptive_clipping']['value_noise_multiplier'] > 0.1
  assert guarantee['steps'] == 2

"""tff_rec.training in process: FedRecon learns, the NumPy evaluation is TFF's,
a resumed run ends where an uninterrupted one does, other settings are refused."""

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
  arrays, _ = run.load_model()
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

"""Differential privacy in the credit job: customer-level DP-SGD inside the banks
(each bank's epsilon, the maximum reported) and bank-level DP over the banks."""

import dataclasses

import numpy as np
import pytest

from tests.tff_credit.helpers import ALGORITHM
from tests.tff_credit.helpers import data_config
from tests.tff_credit.helpers import train_config
from tests.tff_credit.helpers import write_loans_csv
from tff_common import errors
from tff_common import privacy
from tff_common import run_dir
from tff_credit import config
from tff_credit import federation
from tff_credit import model
from tff_credit import training


def _train(path, out, rounds, algorithm, lines=None):
  return training.train(data=data_config(path), algorithm=algorithm,
                        train_config=train_config(rounds), output_dir=str(out),
                        log=(lines.append if lines is not None else lambda line: None))


def test_customer_level_dp_states_every_banks_epsilon_and_resumes_exactly(tff_context, tmp_path):
  del tff_context
  path = write_loans_csv(tmp_path / 'loans.csv', rows=600)
  dp = dataclasses.replace(ALGORITHM, dp_noise_multiplier=1.5, dp_delta=1e-5, dp_clip=1.0)
  lines = []
  _train(path, tmp_path / 'full', 3, dp, lines)
  _train(path, tmp_path / 'resumed', 1, dp)
  _train(path, tmp_path / 'resumed', 3, dp)
  # The noise seeds come from (seed, round, bank): the same noise after a resume.
  for a, b in zip(model.load(run_dir.RunDir(str(tmp_path / 'full'))),
                  model.load(run_dir.RunDir(str(tmp_path / 'resumed'))), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6)
  metadata = model.load_with_metadata(run_dir.RunDir(str(tmp_path / 'full')))[1]
  guarantee, per_bank = metadata['privacy'], metadata['privacy_per_bank']
  assert guarantee['differential_privacy'] == 'customer-level' and guarantee['delta'] == 1e-5
  assert guarantee['epsilon'] == max(per_bank.values()) and len(per_bank) == 3
  # Each bank's epsilon is the accountant's for its rows, batch and steps.
  fed = federation.build_federation(data_config(path))
  rows = len(fed.train['bank_1'][1])
  steps = 3 * round(rows / 32)
  mechanism = privacy.Mechanism(1.5, 'poisson', 32, rows, steps, 1e-5)
  assert per_bank['bank_1'] == pytest.approx(privacy.epsilon(mechanism), rel=1e-9)
  assert any(line.startswith('privacy: customer-level (ε=') for line in lines)
  # The banks' (un-noised) training metrics are not released under DP.
  assert run_dir.RunDir(str(tmp_path / 'full')).training_loss() == ([], [])
  # A target epsilon calibrates the noise for the run's rounds...
  target = dataclasses.replace(dp, dp_noise_multiplier=0.0, target_epsilon=4.0)
  _train(path, tmp_path / 'target', 2, target)
  calibrated = model.load_with_metadata(run_dir.RunDir(str(tmp_path / 'target')))[1]['privacy']
  assert 0.99 * 4 <= calibrated['epsilon'] <= 4
  # ...so training that directory further would change the noise, and is refused.
  with pytest.raises(errors.InputError, match='noise_multiplier_in_use'):
    _train(path, tmp_path / 'target', 3, target)


def test_bank_level_dp_and_no_dp_say_so(tff_context, tmp_path):
  del tff_context
  path = write_loans_csv(tmp_path / 'loans.csv', rows=300)
  bank_level = dataclasses.replace(ALGORITHM, dp_level='bank', dp_noise_multiplier=1.0)
  _train(path, tmp_path / 'bank', 2, bank_level)
  guarantee = model.load_with_metadata(run_dir.RunDir(str(tmp_path / 'bank')))[1]['privacy']
  assert guarantee['differential_privacy'] == 'bank-level'
  assert guarantee['sampling'] == 'all' and guarantee['population'] == 3
  _train(path, tmp_path / 'plain', 1, ALGORITHM)
  assert model.load_with_metadata(run_dir.RunDir(str(tmp_path / 'plain')))[1]['privacy'] == {
      'differential_privacy': 'none'}


def test_dp_settings_that_cannot_work_are_refused(tmp_path):
  with pytest.raises(errors.InputError, match="--algorithm='fedsgd': expected fedavg with "
                     '--dp_level=record'):
    config.AlgorithmConfig(algorithm='fedsgd', dp_noise_multiplier=1.0).check()
  with pytest.raises(errors.InputError, match="--aggregator='median'"):
    config.AlgorithmConfig(aggregator='median', dp_noise_multiplier=1.0).check()
  path = write_loans_csv(tmp_path / 'loans.csv', rows=60)
  fed = federation.build_federation(data_config(path))
  too_big = dataclasses.replace(train_config(2), batch_size=500)
  with pytest.raises(errors.InputError, match='--batch_size=500: expected at most'):
    training.privacy_of(fed, dataclasses.replace(ALGORITHM, dp_noise_multiplier=1.0), too_big)

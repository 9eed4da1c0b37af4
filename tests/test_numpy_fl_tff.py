"""numpy_fl against TFF: the same rounds give the same weights (float32, max |dw| <= 1e-5)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import numpy_fl
from numpy_fl import comparison
from numpy_fl import models
from numpy_fl import synthetic

TOLERANCE = 1e-5


def _banks(model_name):
  data, _ = synthetic.linear_problem(clients=3, features=4, min_examples=9, max_examples=30,
                                     seed=1)
  if model_name == 'logistic':
    data = {k: (x, (y > np.median(y)).astype(np.float32)) for k, (x, y) in data.items()}
  return data


def _max_diff_over_rounds(config, banks):
  from numpy_fl import tff_reference  # pylint: disable=g-import-not-at-top
  clients, make_server, algorithm, initial = comparison.build_numpy(config, banks)
  reference = tff_reference.runner_for(config, banks, initial)
  rows = comparison.side_by_side(server=make_server(), clients=clients, algorithm=algorithm,
                                 reference=reference, rounds=config.rounds, log=None)
  assert [r.round_num for r in rows] == list(range(config.rounds + 1))
  # Training moved the weights, so agreement is not just two idle copies.
  assert rows[-1].numpy_loss < 0.9 * rows[0].numpy_loss
  if config.algorithm == 'fedsgd':
    # TFF's own (Keras) loss of round r is measured on the weights after round r - 1.
    np.testing.assert_allclose([r.tff_reported_loss for r in rows[1:]],
                               [r.numpy_loss for r in rows[:-1]], rtol=1e-5)
  return max(r.max_abs_diff for r in rows)


@pytest.mark.parametrize('model_name,weighting', [
    ('logistic', 'uniform'),
    ('linear', 'num_examples'),
])
def test_fedsgd_matches_tff_build_fed_sgd(tff_context, model_name, weighting):
  del tff_context
  config = comparison.Config(algorithm='fedsgd', model=model_name, weighting=weighting,
                             rounds=50, lr=0.1, server_momentum=0.5)
  assert _max_diff_over_rounds(config, _banks(model_name)) <= TOLERANCE


@pytest.mark.parametrize('model_name,weighting,batch_size,epochs', [
    ('logistic', 'num_examples', None, 2),   # full-batch local gradient steps
    ('linear', 'uniform', 4, 1),             # unshuffled minibatches, short last batch
])
def test_fedavg_matches_tff_fed_avg(tff_context, model_name, weighting, batch_size, epochs):
  del tff_context
  config = comparison.Config(algorithm='fedavg', model=model_name, weighting=weighting,
                             rounds=20, lr=0.05, local_epochs=epochs, batch_size=batch_size)
  assert _max_diff_over_rounds(config, _banks(model_name)) <= TOLERANCE


def _compare(*args, timeout=240):
  return subprocess.run([sys.executable, '-m', 'numpy_fl.compare', *args],
                        capture_output=True, text=True, timeout=timeout)


def test_compare_binary_end_to_end_with_async(tmp_path):
  out = tmp_path / 'out'
  result = _compare('--data=synthetic', '--banks=3', '--synthetic_features=3',
                    '--algorithm=fedavg', '--rounds=3', '--batch_size=8',
                    '--async_buffer=2', '--async_rounds=10', f'--output_dir={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'round 3/3' in result.stdout and 'TFF/NumPy' in result.stdout
  assert 'sync vs async' in result.stdout
  assert sorted(os.listdir(out)) == ['async.csv', 'async.png', 'compare.csv', 'compare.png',
                                     'summary.json']
  summary = json.loads((out / 'summary.json').read_text())
  assert summary['within_tolerance'] and summary['max_abs_diff'] <= TOLERANCE
  lines = (out / 'compare.csv').read_text().splitlines()
  assert lines[0] == ('round_num,numpy_loss,tff_loss,max_abs_diff,numpy_seconds,tff_seconds,'
                      'tff_reported_loss')
  assert len(lines) == 1 + 4  # round 0 and three rounds


def test_compare_binary_bad_flag_is_one_line_and_writes_nothing(tmp_path):
  out = tmp_path / 'out'
  result = _compare('--data=synthetic', '--banks=3', '--async_buffer=4', f'--output_dir={out}',
                    timeout=60)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      'error: --async_buffer must be in [0, --banks=3], got 4']
  assert not out.exists()


def test_fedavg_matches_tff_with_the_credit_jobs_own_model(tff_context):
  """The credit job's scorecard (sigmoid output, default cross-entropy) trains identically."""
  del tff_context
  config = comparison.Config(algorithm='fedavg', model='logistic', weighting='num_examples',
                             rounds=20, lr=0.1, batch_size=5, tff_model='credit')
  assert _max_diff_over_rounds(config, _banks('logistic')) <= TOLERANCE

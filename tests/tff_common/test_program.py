"""The shared training program: sampling, checkpoints, resume, releases, and what
it refuses (a held directory, a non-finite round)."""

import csv
import os
import shutil
import types

import numpy as np
import pytest

from tests.tff_common import helpers
from tff_common import aggregation
from tff_common import communication
from tff_common import errors
from tff_common import program
from tff_common import program_config
from tff_common import run_dir


def test_sampling_is_a_function_of_seed_and_round():
  ids = [f'c{i}' for i in range(20)]
  a = program.sample_clients(ids, clients_per_round=5, seed=3, round_num=7)
  b = program.sample_clients(list(reversed(ids)), clients_per_round=5, seed=3, round_num=7)
  c = program.sample_clients(ids, clients_per_round=5, seed=3, round_num=8)
  assert a == b and len(set(a)) == 5 and a != c
  assert program.sample_clients(ids, clients_per_round=None, seed=0, round_num=1) == sorted(ids)
  with pytest.raises(ValueError):
    program.sample_clients(ids, clients_per_round=0, seed=0, round_num=1)


def test_poisson_sampling_draws_each_client_with_probability_m_over_n():
  ids = [f'c{i}' for i in range(200)]
  rounds = [program.sample_clients(ids, clients_per_round=20, seed=1, round_num=r,
                                   sampling='poisson') for r in range(1, 201)]
  sizes = [len(r) for r in rounds]
  # Binomial(200, 0.1): mean 20, sd 4.2; the mean of 200 rounds is within 1 of 20.
  assert abs(np.mean(sizes) - 20) < 1.0 and len(set(sizes)) > 3
  assert rounds[0] == program.sample_clients(ids, clients_per_round=20, seed=1, round_num=1,
                                             sampling='poisson')
  counts = {i: 0 for i in ids}
  for r in rounds:
    for i in r:
      counts[i] += 1
  assert min(counts.values()) > 5 and max(counts.values()) < 40  # every client ~20 of 200
  with pytest.raises(errors.InputError, match="--client_sampling='uniform'"):
    program_config.ProgramConfig(client_sampling='uniform').check()


def test_flatten_metrics_keeps_scalars_only():
  flat = program.flatten_metrics({'a': {'loss': np.float32(0.5), 'v': np.ones(3)}, 'n': 4})
  assert flat == {'a/loss': 0.5, 'n': 4.0}


def _config(rounds, **kwargs):
  return program_config.ProgramConfig(rounds=rounds, **kwargs)


def test_resume_equals_uninterrupted_run(tff_context, tmp_path):
  del tff_context
  process = helpers.linear_process()
  ids = ['c0', 'c1', 'c2', 'c3']
  common = dict(process=process, client_ids=ids, client_data_fn=helpers.linear_datasets,
                log=lambda s: None)
  sampling = dict(clients_per_round=2, seed=1)
  full = program.run_training(config=_config(4, **sampling),
                              run=run_dir.RunDir(str(tmp_path / 'full')), **common)
  part = run_dir.RunDir(str(tmp_path / 'part'))
  first = program.run_training(config=_config(2, **sampling), run=part, **common)
  lines = []
  second = program.run_training(config=_config(4, **sampling), run=part,
                                **{**common, 'log': lines.append})
  assert first.rounds_run == 2 and second.resumed_from == 2 and second.rounds_run == 2
  assert any('resuming from the checkpoint of round 2' in line for line in lines)
  w_full = process.get_model_weights(full.state).trainable
  w_resumed = process.get_model_weights(second.state).trainable
  for a, b in zip(w_full, w_resumed, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # Loss fell, and the CSV holds each round exactly once after the resume.
  losses = [h['client_work/train/loss'] for h in full.history]
  assert losses[-1] < losses[0]
  with open(part.metrics_csv) as f:
    rounds = [int(row['round']) for row in csv.DictReader(f)]
  assert rounds == [1, 2, 3, 4]
  assert part.training_loss()[0] == [1, 2, 3, 4]
  assert os.listdir(part.tensorboard)


def test_torn_checkpoint_is_skipped(tff_context, tmp_path):
  del tff_context
  process = helpers.linear_process()
  run = run_dir.RunDir(str(tmp_path / 'run'))
  common = dict(process=process, client_ids=['c0', 'c1'], client_data_fn=helpers.linear_datasets,
                run=run, log=lambda s: None)
  program.run_training(config=_config(2), **common)
  # A crash in the middle of writing round 3 leaves a directory without a model.
  os.makedirs(os.path.join(run.checkpoints, 'round_3'))
  lines = []
  result = program.run_training(config=_config(3), **{**common, 'log': lines.append})
  assert result.resumed_from == 2 and result.rounds_run == 1
  assert any('checkpoint of round 3 is unreadable' in line for line in lines)
  assert os.path.isdir(os.path.join(run.unreadable_checkpoints, 'round_3'))


def test_open_run_checks_claims_and_seeds(tmp_path):
  import tensorflow as tf
  run = run_dir.RunDir(str(tmp_path / 'run'))
  config = program_config.ProgramConfig(rounds=3, seed=7)
  settings = {'train': {'rounds': 3, 'lr': 0.1}}
  with pytest.raises(errors.InputError, match='--clients_per_round'):
    program.open_run(run, settings=settings, config=program_config.ProgramConfig(clients_per_round=0))
  assert not os.path.exists(run.path)  # an invalid flag claims nothing
  program.open_run(run, settings=settings, config=config)
  first = tf.random.uniform([3]).numpy()
  # More rounds (or another checkpoint period) continue the same run, reseeded.
  program.open_run(run, settings={'train': {'rounds': 9, 'lr': 0.1}},
                   config=program_config.ProgramConfig(rounds=9, seed=7))
  np.testing.assert_array_equal(tf.random.uniform([3]).numpy(), first)
  with pytest.raises(errors.InputError, match='train/lr'):
    program.open_run(run, settings={'train': {'rounds': 3, 'lr': 0.2}}, config=config)


def test_a_run_held_by_another_process_is_refused_untouched(tff_context, tmp_path):
  del tff_context
  from tests.tff_common.test_run_dir import _hold_in_another_process
  from tests.tff_common.test_run_dir import _tree
  run = run_dir.RunDir(str(tmp_path / 'run'))
  common = dict(process=helpers.linear_process(), client_ids=['c0', 'c1'], client_data_fn=helpers.linear_datasets,
                run=run, log=lambda s: None)
  program.run_training(config=_config(1), **common)
  holder = _hold_in_another_process(tmp_path / 'run')
  try:
    before = _tree(tmp_path / 'run')
    with pytest.raises(errors.InputError, match=f'is in use by another process \\(pid {holder.pid}\\)'):
      program.run_training(config=_config(2), **common)
    assert _tree(tmp_path / 'run') == before
  finally:
    holder.kill()
    holder.wait()


def test_stale_temporary_checkpoints_are_removed_and_said(tff_context, tmp_path):
  del tff_context
  run = run_dir.RunDir(str(tmp_path / 'run'))
  common = dict(process=helpers.linear_process(), client_ids=['c0', 'c1'], client_data_fn=helpers.linear_datasets,
                run=run)
  program.run_training(config=_config(1), log=lambda s: None, **common)
  # A kill while TFF wrote round 2 leaves its temporary directory behind.
  os.makedirs(os.path.join(run.checkpoints, 'round_2_temp1234', 'variables'))
  lines = []
  result = program.run_training(config=_config(2), log=lines.append, **common)
  assert result.resumed_from == 1 and result.rounds_run == 1
  assert sorted(os.listdir(run.checkpoints)) == ['round_1', 'round_2']
  assert lines[0] == ('removed 1 temporary checkpoint left by an interrupted run: '
                      'round_2_temp1234')


def test_no_readable_checkpoint_restarts_from_round_1_and_says_so(tff_context, tmp_path):
  del tff_context
  run = run_dir.RunDir(str(tmp_path / 'run'))
  common = dict(process=helpers.linear_process(), client_ids=['c0', 'c1'], client_data_fn=helpers.linear_datasets,
                run=run)
  program.run_training(config=_config(1), log=lambda s: None, **common)
  # Torn: the directory without its model.
  shutil.rmtree(os.path.join(run.checkpoints, 'round_1'))
  os.makedirs(os.path.join(run.checkpoints, 'round_1'))
  lines = []
  result = program.run_training(config=_config(1), log=lines.append, **common)
  assert result.resumed_from == 0 and result.rounds_run == 1
  assert f'no readable checkpoint in {run.checkpoints}; training starts from round 1' in lines


def _overflowing_at_round_2(ids, round_num):
  if round_num != 2:
    return helpers.linear_datasets(ids, round_num)
  import tensorflow as tf
  # Every client (TFF drops a single client's non-finite update, and the round
  # goes on without it): finite values whose squares overflow.
  x = np.full((4, 2), 3e38, np.float32)
  return [tf.data.Dataset.from_tensor_slices((x, np.ones((4, 1), np.float32))).batch(4)
          for _ in ids]


def test_a_non_finite_update_is_refused_before_anything_of_its_round_is_written(
    tff_context, tmp_path):
  del tff_context
  run = run_dir.RunDir(str(tmp_path / 'run'))
  with pytest.raises(errors.TrainingFailed) as raised:
    program.run_training(process=helpers.linear_process(), client_ids=['c0', 'c1'],
                         client_data_fn=_overflowing_at_round_2, run=run, config=_config(3),
                         log=lambda s: None)
  assert isinstance(raised.value, errors.InputError)  # exit 2 in a binary
  assert str(raised.value) == (
      "round 2: the clients' update was not finite (an overflow in the data, or training "
      'diverged); lower the learning rates or check the data')
  assert os.listdir(run.checkpoints) == ['round_1']
  assert [int(r['round']) for r in run.metrics()] == [1]


class _DivergingProcess:
  """A stand-in learning process whose second round makes the weights NaN."""

  def initialize(self):
    return {'w': np.zeros(2, np.float32)}

  def next(self, state, data):
    del data
    w = state['w'] + 1 if not state['w'].any() else np.full(2, np.nan, np.float32)
    return types.SimpleNamespace(state={'w': w}, metrics={'loss': 1.0})

  def get_model_weights(self, state):
    return [state['w']]


def test_non_finite_weights_are_refused(tmp_path):
  run = run_dir.RunDir(str(tmp_path / 'run'))
  with pytest.raises(errors.TrainingFailed, match='round 2: the new model weights are not finite'):
    program.run_training(process=_DivergingProcess(), client_ids=['c0'],
                         client_data_fn=lambda ids, r: [], run=run, config=_config(3),
                         log=lambda s: None)
  assert os.listdir(run.checkpoints) == ['round_1']
  assert [int(r['round']) for r in run.metrics()] == [1]


def test_each_round_records_the_bytes_it_moved(tmp_path):
  process = helpers.linear_process()
  run = run_dir.RunDir(str(tmp_path / 'run'))
  wire = communication.Wire(aggregator=aggregation.MEAN, weighted=True)
  program.run_training(process=process, client_ids=['c0', 'c1', 'c2'],
                       client_data_fn=helpers.linear_datasets, run=run,
                       config=program_config.ProgramConfig(rounds=2, clients_per_round=2),
                       wire=wire, log=lambda s: None)
  # Model: a (2, 1) kernel and a bias, float32, so 12 bytes down per client; up the
  # same 12 and the client's weight, 4; two clients a round.
  for row in run.metrics():
    assert (row['bytes_down_per_client'], row['bytes_up_per_client']) == (12, 16)
    assert (row['bytes_down'], row['bytes_up']) == (24, 32)
  assert run.total('bytes_up', 2) == 64


# A validation score per round: best at round 2 (round 4 ties it; the earlier wins),
# none at round 5.
_SCORES = {1: 0.2, 2: 0.9, 3: 0.5, 4: 0.9, 5: float('nan'), 6: 0.1}


def _scored(state, round_num):
  del state
  return {'val/score': _SCORES[round_num]}


def test_selection_keeps_the_best_round_and_a_resume_recovers_it(tff_context, tmp_path):
  del tff_context
  process = helpers.linear_process()
  common = dict(process=process, client_ids=['c0', 'c1'], client_data_fn=helpers.linear_datasets,
                evaluate_fn=_scored, selection=program.Selection('val/score', 'max'),
                log=lambda s: None)
  full = program.run_training(config=_config(5), run=run_dir.RunDir(str(tmp_path / 'full')),
                              **common)
  assert (full.best_round, full.best_value) == (2, 0.9)
  # The best state is round 2's, not the last one.
  two = program.run_training(config=_config(2), run=run_dir.RunDir(str(tmp_path / 'two')),
                             **{**common, 'selection': None})
  assert two.best_state is None and two.best_round == 0
  for a, b, last in zip(process.get_model_weights(full.best_state).trainable,
                        process.get_model_weights(two.state).trainable,
                        process.get_model_weights(full.state).trainable, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, last)
  # The best so far at each checkpoint; two kept (a crash between two saves leaves one).
  assert sorted(os.listdir(os.path.join(tmp_path, 'full', run_dir.BEST_CHECKPOINTS))) == [
      'round_1', 'round_2']
  # Interrupted after round 3, resumed: the same best, from metrics.csv and its checkpoint.
  part = run_dir.RunDir(str(tmp_path / 'part'))
  program.run_training(config=_config(3), run=part, **common)
  lines = []
  resumed = program.run_training(config=_config(5), run=part, **{**common, 'log': lines.append})
  assert resumed.resumed_from == 3 and (resumed.best_round, resumed.best_value) == (2, 0.9)
  assert 'best round so far: 2 (val/score 0.9000)' in lines
  for a, b in zip(process.get_model_weights(resumed.best_state).trainable,
                  process.get_model_weights(full.best_state).trainable, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # Asked for no more rounds: the best is still returned.
  done = program.run_training(config=_config(5), run=part, **common)
  assert done.rounds_run == 0 and done.best_round == 2 and done.best_state is not None
  # Minimizing picks the lowest score instead.
  low = program.run_training(config=_config(3), run=run_dir.RunDir(str(tmp_path / 'low')),
                             **{**common, 'selection': program.Selection('val/score', 'min')})
  assert low.best_round == 1


def test_a_lost_best_checkpoint_is_said_and_the_best_chosen_among_later_rounds(
    tff_context, tmp_path):
  del tff_context
  run = run_dir.RunDir(str(tmp_path / 'run'))
  common = dict(process=helpers.linear_process(), client_ids=['c0', 'c1'],
                client_data_fn=helpers.linear_datasets, evaluate_fn=_scored, run=run,
                selection=program.Selection('val/score'))
  program.run_training(config=_config(3), log=lambda s: None, **common)
  shutil.rmtree(run.best_checkpoints)
  lines = []
  result = program.run_training(config=_config(6), log=lines.append, **common)
  assert any('best round so far (2, val/score 0.9000) is missing' in line for line in lines)
  assert result.best_round == 4  # of rounds 4-6: 0.9, none, 0.1
  with pytest.raises(ValueError, match='max or min'):
    program.Selection('val/score', 'highest')

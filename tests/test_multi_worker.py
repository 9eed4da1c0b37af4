"""Several TFF workers (tff_common.runtime) compute what one does, on loopback:
credit FedAvg and recommendation FedRecon end with the same weights on two
local workers as on the session's one, no worker is left behind, and a worker
killed during a run is named and the rerun resumes to the same model.

Each test installs a two-worker context for its `with` block only
(`runtime.installed`); the session's one-worker context is current outside it.
"""

import os
import signal

import numpy as np
import pytest

from tests.tff_common import helpers as common_helpers
from tests.tff_credit import helpers as credit_helpers
from tests.tff_rec import helpers as rec_helpers
from tff_common import runtime


@pytest.fixture
def split_forms(monkeypatch):
  """The computations the runtime split across workers (not run whole on one)."""
  forms = []

  def recording(comp):
    form = mergeable_form(comp)
    if form is not None:
      forms.append(comp)
    return form

  mergeable_form = runtime.mergeable_form
  monkeypatch.setattr(runtime, 'mergeable_form', recording)
  return forms


def _assert_gone(pids):
  assert len(pids) == 2 and not any(common_helpers.pid_alive(pid) for pid in pids)


def test_credit_fedavg_on_two_workers_equals_one(tff_context, tmp_path, split_forms):
  del tff_context
  from tff_common import run_dir
  from tff_credit import model

  path = credit_helpers.write_loans_csv(tmp_path / 'loans.csv', rows=300)
  credit_helpers.train(path, tmp_path / 'one', 5)
  with runtime.installed(local_workers=2) as two:
    pids = [w.pid for w in two.workers]
    credit_helpers.train(path, tmp_path / 'two', 5)
  _assert_gone(pids)
  assert split_forms  # the rounds ran on both workers, not on the first alone
  one = model.load(run_dir.RunDir(str(tmp_path / 'one')))
  both = model.load(run_dir.RunDir(str(tmp_path / 'two')))
  for a, b in zip(one, both, strict=True):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_rec_fedrecon_on_two_workers_equals_one(tff_context, tmp_path, split_forms):
  del tff_context
  from tff_rec import config as config_lib
  from tff_rec import split as split_lib
  from tff_rec import synthetic
  from tff_rec import training

  # The split of tests/tff_rec's `tiny_split`.
  tiny_split = split_lib.split_ratings(synthetic.synthetic_ratings(), test_fraction=0.25,
                                       heldout_users_fraction=0.125, seed=0)

  def train(output_dir):
    return training.train(data_config=config_lib.DataConfig(),
                          train_config=rec_helpers.tiny_config(rounds=3), split=tiny_split,
                          output_dir=str(output_dir), log=lambda line: None)

  one = train(tmp_path / 'one')
  with runtime.installed(local_workers=2) as two:
    pids = [w.pid for w in two.workers]
    both = train(tmp_path / 'two')
  _assert_gone(pids)
  assert split_forms
  for name in ('item_factors', 'item_bias', 'implicit_item_factors', 'implicit_item_bias'):
    np.testing.assert_allclose(getattr(one, name), getattr(both, name), rtol=0, atol=1e-6)


def test_a_worker_killed_during_a_run_is_named_and_the_rerun_resumes(tff_context, tmp_path):
  """Worker 2 of 2 is killed while round 3's data is built: the round fails
  with one line naming it and its log, nothing of round 3 is written, and
  rerunning (here on the session's worker) resumes from round 3 and ends
  where an uninterrupted run does."""
  del tff_context
  from tff_common import program
  from tff_common import program_config
  from tff_common import run_dir

  config = program_config.ProgramConfig(rounds=4, rounds_per_checkpoint=1)
  ids = ['c0', 'c1', 'c2', 'c3']

  def train(run, client_data_fn):
    process = common_helpers.linear_process()
    result = program.run_training(process=process, client_ids=ids, client_data_fn=client_data_fn,
                                  run=run, config=config, log=lines.append)
    return process.get_model_weights(result.state).trainable

  lines = []
  uninterrupted = train(run_dir.RunDir(str(tmp_path / 'full')), common_helpers.linear_datasets)

  run = run_dir.RunDir(str(tmp_path / 'killed'))
  with runtime.installed(local_workers=2) as two:
    pids = [w.pid for w in two.workers]
    victim = two.workers[1]
    pid, log_path = victim.pid, victim.log_path

    def client_data(sampled, round_num):
      if round_num == 3:
        os.kill(pid, signal.SIGKILL)
      return common_helpers.linear_datasets(sampled, round_num)

    with pytest.raises(runtime.WorkerFailed) as error:
      train(run, client_data)
  _assert_gone(pids)
  assert str(error.value) == (
      f'TFF worker 2/2 (local, pid {pid}) was killed by signal 9; its log: {log_path}; '
      'rerun the same command to resume from the last checkpoint')
  assert os.path.exists(log_path)  # a crashed worker's log is kept
  os.remove(log_path)
  assert sorted(os.listdir(run.checkpoints)) == ['round_1', 'round_2']
  assert [row[run_dir.ROUND] for row in run.metrics()] == [1, 2]

  lines.clear()
  resumed = train(run, common_helpers.linear_datasets)
  assert 'resuming from the checkpoint of round 2' in ' '.join(lines)
  for a, b in zip(uninterrupted, resumed, strict=True):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)

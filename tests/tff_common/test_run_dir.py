"""tff_common.run_dir: the settings check, the model file, the metrics readers, the
lock, and one-line errors for directories and files that cannot be used."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tff_common import errors
from tff_common import run_dir

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_a_run_directory_refuses_other_settings(tmp_path):
  run = run_dir.RunDir(str(tmp_path / 'run'))
  settings = {'data': {'seed': 0}, 'train': {'rounds': 5, 'lr': 0.1}}
  run.claim(settings)  # nothing stored yet: anything goes, and it is stored
  assert json.loads((tmp_path / 'run' / 'config.json').read_text()) == settings
  run.claim(settings)
  # More rounds continue the same run when the caller says so...
  more = {'data': {'seed': 0}, 'train': {'rounds': 9, 'lr': 0.1}}
  run.claim(more, may_change=('rounds',))
  # ...and the stored settings say how far the run now goes.
  assert json.loads((tmp_path / 'run' / 'config.json').read_text()) == more
  # ...anything else is refused, naming the setting, its old and new value.
  with pytest.raises(errors.InputError, match=r'train/lr: 0.1 there, 0.2 now'):
    run.claim({'data': {'seed': 0}, 'train': {'rounds': 5, 'lr': 0.2}})
  with pytest.raises(errors.InputError, match='train/rounds'):
    run.claim(settings)
  with pytest.raises(errors.InputError, match='data/split'):
    run.claim({**settings, 'data': {'seed': 0, 'split': 'temporal'}})


def test_a_setting_added_later_is_accepted_at_its_default_only(tmp_path):
  run = run_dir.RunDir(str(tmp_path / 'run'))
  run.claim({'train': {'rounds': 5}})  # written before 'client_sampling' existed
  defaults = {'train': {'rounds': 10, 'client_sampling': 'fixed'}}
  with pytest.raises(errors.InputError, match='train/client_sampling'):
    run.claim({'train': {'rounds': 5, 'client_sampling': 'poisson'}}, defaults=defaults)
  run.claim({'train': {'rounds': 5, 'client_sampling': 'fixed'}}, defaults=defaults)
  assert json.loads((tmp_path / 'run' / 'config.json').read_text()) == {
      'train': {'rounds': 5, 'client_sampling': 'fixed'}}


def test_settings_of_the_earlier_layout_are_checked(tmp_path):
  (tmp_path / 'train_config.json').write_text(json.dumps({'lr': 0.1, 'rounds': None}))
  run = run_dir.RunDir(str(tmp_path))
  with pytest.raises(errors.InputError, match='lr: 0.1 there, 0.3 now'):
    run.claim({'lr': 0.3, 'rounds': None})
  assert not (tmp_path / 'config.json').exists()
  # Continued with more rounds: the settings move to the current file name.
  run.claim({'lr': 0.1, 'rounds': 40}, may_change=('rounds',))
  assert run.read_json(run_dir.CONFIG) == {'lr': 0.1, 'rounds': 40}
  assert (tmp_path / 'config.json').exists()


def test_model_keeps_names_order_and_metadata(tmp_path):
  run = run_dir.RunDir(str(tmp_path / 'run'))
  arrays = {'score/kernel': np.arange(3, dtype=np.float32), 'score/bias': np.ones(1), 'a': np.zeros(2)}
  run.save_model(arrays, rounds=4, algorithm='fedavg')
  loaded, metadata = run.load_model()
  assert list(loaded) == ['score/kernel', 'score/bias', 'a']
  for name, value in arrays.items():
    np.testing.assert_array_equal(loaded[name], value)
  assert metadata == {'rounds': 4, 'algorithm': 'fedavg'}
  with pytest.raises(errors.InputError, match='model.npz: not found; train first'):
    run_dir.RunDir(str(tmp_path / 'none')).load_model(missing_hint='train first')


def test_positional_weights_of_the_earlier_layout_load_in_order(tmp_path):
  np.savez(tmp_path / 'model_weights.npz', np.ones((2, 1)), np.zeros(1))
  arrays, metadata = run_dir.RunDir(str(tmp_path)).load_model()
  assert [a.shape for a in arrays.values()] == [(2, 1), (1,)] and metadata == {}


def test_curves_come_from_metrics_csv(tmp_path):
  run = run_dir.RunDir(str(tmp_path))
  (tmp_path / 'metrics.csv').write_text(
      'round,client_work/train/loss,test_rmse,seconds\n1,2.5,0.9,1.5\n2,2.0,,2.0\n3,1.5,0.8,4.0\n')
  assert run.training_loss() == ([1, 2, 3], [2.5, 2.0, 1.5])
  assert run.curve('test_rmse') == ([1, 3], [0.9, 0.8])
  assert run.seconds_in_rounds(2) == pytest.approx(3.5)
  assert run_dir.RunDir(str(tmp_path / 'none')).metrics() == []


# The lock.

_HOLD = '''
import sys, time
from tff_common import run_dir
with run_dir.RunDir(sys.argv[1]).lock():
  print('locked', flush=True)
  time.sleep(120)
'''


_TRY_LOCK = '''
import sys
from tff_common import errors, run_dir
try:
  with run_dir.RunDir(sys.argv[1]).lock():
    pass
except errors.InputError:
  sys.exit(3)
'''


def _hold_in_another_process(path):
  """A process that holds `path`'s lock until killed; returns it once it holds it."""
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
  assert holder.stdout.readline() == b'locked\n'
  return holder


def _tree(path):
  """Every file and directory under `path`, with its size and modification time."""
  return {(p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
          for p in [path, *path.rglob('*')]}


def test_a_directory_in_use_by_another_process_is_refused_untouched(tmp_path):
  run = run_dir.RunDir(str(tmp_path / 'run'))
  run.claim({'lr': 0.1})
  holder = _hold_in_another_process(tmp_path / 'run')
  try:
    before = _tree(tmp_path / 'run')
    with pytest.raises(errors.InputError) as raised:
      with run.lock():
        pass
    message = str(raised.value)
    assert message == (f'{run.path} is in use by another process (pid {holder.pid}) training '
                       'or evaluating in it; wait for it to finish, or use another --output_dir')
    assert _tree(tmp_path / 'run') == before
  finally:
    holder.kill()
    holder.wait()
  # The kernel releases the lock of a killed process: no stale lock to clean up.
  with run.lock():
    assert (tmp_path / 'run' / run_dir.LOCK).read_text() == f'{os.getpid()}\n'


def test_the_lock_is_reentrant_and_released(tmp_path):
  run = run_dir.RunDir(str(tmp_path / 'new' / 'run'))
  with run.lock():  # creates the directory
    with run_dir.RunDir(str(tmp_path / 'new' / 'run' / '.')).lock():  # the same, reentrant
      with run.child('fedavg').lock():  # a child run directory has its own lock
        pass
    # Still held after the inner block: another process is refused.
    assert subprocess.run([sys.executable, '-c', _TRY_LOCK, run.path], cwd=ROOT).returncode == 3
  assert subprocess.run([sys.executable, '-c', _TRY_LOCK, run.path], cwd=ROOT).returncode == 0
  # Evaluating a directory that does not exist creates nothing.
  with run_dir.RunDir(str(tmp_path / 'none')).lock(create=False):
    pass
  assert not (tmp_path / 'none').exists()


# Output directories that cannot be written, and model files that cannot be read.

def test_an_output_dir_that_cannot_be_written_is_one_input_error(tmp_path):
  (tmp_path / 'file').write_text('not a directory')
  with pytest.raises(errors.InputError, match=r'file: exists and is not a directory'):
    with run_dir.RunDir(str(tmp_path / 'file')).lock():
      pass
  with pytest.raises(errors.InputError, match=r'file/run: cannot create the output directory '
                     r'\(Not a directory\)'):
    run_dir.RunDir(str(tmp_path / 'file' / 'run')).claim({'lr': 0.1})
  # A name taken by a directory: the rename onto it fails.
  run = run_dir.RunDir(str(tmp_path / 'run'))
  (tmp_path / 'run' / run_dir.MODEL).mkdir(parents=True)
  (tmp_path / 'run' / run_dir.CONFIG).mkdir()
  with pytest.raises(errors.InputError, match=r'run/model.npz: cannot write \(Is a directory\)'):
    run.save_model({'w': np.ones(2)})
  (tmp_path / 'run' / run_dir.SUMMARY).mkdir()
  with pytest.raises(errors.InputError, match=r'run/summary.json: cannot write'):
    run.write_json(run_dir.SUMMARY, {'auc': 0.5})
  with pytest.raises(errors.InputError, match=r'run/config.json: unreadable'):
    run.claim({'lr': 0.1})


def test_a_read_only_output_dir_is_one_input_error(tmp_path, monkeypatch):
  # The OS's refusal, simulated: tests run as root on CI, where a mode-0500
  # directory would still be writable.
  real_open = os.open

  def refuse_lock_file(path, *args, **kwargs):
    if str(path).endswith(run_dir.LOCK):
      raise PermissionError(13, 'Permission denied', path)
    return real_open(path, *args, **kwargs)

  monkeypatch.setattr(run_dir.os, 'open', refuse_lock_file)
  with pytest.raises(errors.InputError, match=r'ro/.lock: cannot create the lock file .*'
                     r'\(Permission denied\)'):
    with run_dir.RunDir(str(tmp_path / 'ro')).lock():
      pass


def test_a_corrupt_model_is_one_input_error_naming_it(tmp_path):
  run = run_dir.RunDir(str(tmp_path))
  run.save_model({'w': np.arange(1000.0)}, rounds=2)
  path = tmp_path / run_dir.MODEL
  whole = path.read_bytes()
  for content in (whole[:len(whole) // 2], b'not an archive', b''):  # a copy cut short...
    path.write_bytes(content)
    with pytest.raises(errors.InputError, match=r'model.npz: unreadable \(.*\); train again'):
      run.load_model()
  np.savez(path, w=np.ones(2))  # no metadata: not a file this code wrote
  with pytest.raises(errors.InputError, match=r'model.npz: unreadable \(ValueError: no metadata\)'):
    run.load_model()
  np.savez(path, w=np.ones(2), __metadata__=np.array('{not json'))
  with pytest.raises(errors.InputError, match=r'model.npz: unreadable \(JSONDecodeError'):
    run.load_model()
  path.unlink()
  path.mkdir()
  with pytest.raises(errors.InputError, match=r'model.npz: unreadable \(IsADirectoryError'):
    run.load_model()


# The data fingerprint.

def test_a_changed_data_fingerprint_is_said_in_words(tmp_path):
  run = run_dir.RunDir(str(tmp_path / 'run'))
  run.claim({'data': {'path': 'loans.csv', 'sha256': 'a' * 64}, 'lr': 0.1})
  with pytest.raises(errors.InputError) as raised:
    run.claim({'data': {'path': 'loans.csv', 'sha256': 'b' * 64}, 'lr': 0.1})
  message = str(raised.value)
  assert "the data's content changed since this directory's run started" in message
  assert 'data/sha256: aaaaaaaaaaaa... there, bbbbbbbbbbbb... now' in message
  assert 'other settings' not in message and '\n' not in message
  # With another setting changed too, both are named.
  with pytest.raises(errors.InputError, match=r'other settings \(lr: 0.1 there, 0.2 now\); '
                     r"the data's content changed"):
    run.claim({'data': {'path': 'loans.csv', 'sha256': 'b' * 64}, 'lr': 0.2})
  # A run from before fingerprints cannot be checked: refused, with the way out.
  old = run_dir.RunDir(str(tmp_path / 'old'))
  old.claim({'data': {'path': 'loans.csv'}, 'lr': 0.1})
  with pytest.raises(errors.InputError) as raised:
    old.claim({'data': {'path': 'loans.csv', 'sha256': 'a' * 64}, 'lr': 0.1})
  assert str(raised.value).endswith(
      "config.json: this directory's run predates data fingerprints (no data/sha256 stored), "
      'so the data it was trained on cannot be checked; use a new --output_dir')


def test_the_best_round_of_a_metric_up_to_a_round(tmp_path):
  run = run_dir.RunDir(str(tmp_path))
  (tmp_path / 'metrics.csv').write_text(
      'round,val/auc,loss\n3,0.7,1\n1,0.6,3\n2,0.8,2\n4,,1\n5,0.8,0.5\n6,nan,0.1\n')
  assert run.best('val/auc', mode='max', up_to=6) == (2, 0.8)  # round 5 ties: the earlier
  assert run.best('val/auc', mode='max', up_to=1) == (1, 0.6)
  assert run.best('loss', mode='min', up_to=4) == (3, 1.0)  # rounds 3 and 4 tie
  assert run.best('val/auc', mode='min', up_to=6) == (1, 0.6)
  best_round, value = run.best('other', mode='max', up_to=6)
  assert best_round == 0 and np.isnan(value)

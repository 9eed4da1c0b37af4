"""The binary `python -m tff_rec.train`: kill -9 and rerun resumes, it trains as the
library does (the seeding rule), and bad input is one line, exit 2, nothing written."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.tff_rec import helpers
from tff_common import run_dir
from tff_rec import config as config_lib
from tff_rec import params
from tff_rec import synthetic
from tff_rec import training

ROUNDS = 6


@dataclasses.dataclass
class BinaryRun:
  data_path: str         # the synthetic ratings it trained on (ml-100k format)
  args: list[str]        # its flags but --output_dir
  root: run_dir.RunDir   # its --output_dir


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """One uninterrupted run of the binary, TINY settings (shared by the tests below)."""
  tmp = tmp_path_factory.mktemp('train_binary')
  data_path = synthetic.write(synthetic.synthetic_ratings(), str(tmp / 'ml'), 'ml-100k')
  args = helpers.tiny_flags() + [f'--data={data_path}', f'--rounds={ROUNDS}']
  full = helpers.run_module('tff_rec.train', f'--output_dir={tmp / "full"}', *args)
  assert full.returncode == 0, full.stderr[-2000:]
  return BinaryRun(data_path=data_path, args=args, root=run_dir.RunDir(str(tmp / 'full')))


def _model(root: run_dir.RunDir, algorithm: str = 'fedrecon') -> params.MFParams:
  arrays, _ = root.child(algorithm).load_model()
  return params.from_arrays(arrays)


def test_kill_9_then_rerun_resumes_and_ends_equal(uninterrupted, tmp_path):
  args = uninterrupted.args
  killed = str(tmp_path / 'killed')
  log_path = tmp_path / 'killed.log'
  with open(log_path, 'w') as log:
    process = subprocess.Popen([sys.executable, '-m', 'tff_rec.train', f'--output_dir={killed}',
                                *args], stdout=log, stderr=subprocess.STDOUT, cwd=helpers.ROOT)
  deadline = time.monotonic() + 120
  while f'round 3/{ROUNDS}' not in log_path.read_text():
    assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
    time.sleep(0.1)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not os.path.exists(os.path.join(killed, 'fedrecon', run_dir.MODEL))
  resumed = helpers.run_module('tff_rec.train', f'--output_dir={killed}', *args)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert 'resuming from the checkpoint of round' in resumed.stdout
  assert f'round 1/{ROUNDS}' not in resumed.stdout
  a = _model(run_dir.RunDir(killed))
  b = _model(uninterrupted.root)
  np.testing.assert_allclose(a.item_factors, b.item_factors, atol=1e-6)
  np.testing.assert_allclose(a.item_bias, b.item_bias, atol=1e-6)
  assert a.offset == pytest.approx(b.offset, abs=1e-6)


def test_binary_and_library_with_the_same_settings_train_identically(uninterrupted, tmp_path):
  """The seeding rule: `training.train` seeds the run itself, so an in-process call
  (whatever global seed its caller left) trains what the binary trained."""
  data_config = config_lib.DataConfig(data=uninterrupted.data_path)
  train_config = helpers.tiny_config(rounds=ROUNDS)
  tf.keras.utils.set_random_seed(12345)  # the caller's own seed must not matter
  trained = training.train(data_config=data_config, train_config=train_config,
                           output_dir=str(tmp_path), log=lambda s: None)
  # The same settings, as the binary stored them from its flags.
  library = run_dir.RunDir(str(tmp_path))
  assert library.read_json(run_dir.CONFIG) == uninterrupted.root.read_json(run_dir.CONFIG)
  assert (library.child('fedrecon').read_json(run_dir.CONFIG) ==
          uninterrupted.root.child('fedrecon').read_json(run_dir.CONFIG))
  binary = _model(uninterrupted.root)
  for name in ('item_factors', 'item_bias', 'implicit_item_factors', 'implicit_item_bias'):
    np.testing.assert_allclose(getattr(trained, name), getattr(binary, name), rtol=0,
                               atol=1e-7, err_msg=name)
  assert trained.offset == pytest.approx(binary.offset, abs=1e-7)


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path):
  bad = tmp_path / 'bad' / 'ratings.dat'
  bad.parent.mkdir()
  bad.write_text('1::100::4::10\n1::101::x::11\n')
  result = helpers.run_module('tff_rec.train', f'--data={bad}',
                              f'--output_dir={tmp_path / "bad_run"}')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(f'error: {bad}, line 2, column 3')
  assert not os.path.exists(tmp_path / 'bad_run')
  # A flag out of range is refused before the data is read or anything written; 0 rounds
  # would save an untrained model as if trained.
  for flag, message in (('--rounds=0', '--rounds=0: expected an integer >= 1'),
                        ('--recon_lr=-1', '--recon_lr=-1.0: expected a number > 0'),
                        ('--test_fraction=1', '--test_fraction=1.0: expected a number in (0, 1)')):
    result = helpers.run_module('tff_rec.train', f'--data={bad}', flag,
                                f'--output_dir={tmp_path / "bad_run"}')
    assert result.returncode == 2, flag
    assert result.stderr.strip().splitlines() == [f'error: {message}'], flag
    assert not os.path.exists(tmp_path / 'bad_run')

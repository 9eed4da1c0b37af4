"""tff_common.run_dir: the settings check, the model file, the metrics readers."""

import json

import numpy as np
import pytest

from tff_common import errors
from tff_common import run_dir


def test_a_run_directory_refuses_other_settings(tmp_path):
  run = run_dir.RunDir(str(tmp_path / 'run'))
  settings = {'data': {'seed': 0}, 'train': {'rounds': 5, 'lr': 0.1}}
  run.claim(settings)  # nothing stored yet: anything goes, and it is stored
  assert json.loads((tmp_path / 'run' / 'config.json').read_text()) == settings
  run.claim(settings)
  # More rounds continue the same run when the caller says so...
  more = {'data': {'seed': 0}, 'train': {'rounds': 9, 'lr': 0.1}}
  run.claim(more, may_change=('rounds',))
  # ...anything else is refused, naming the setting, its old and new value.
  with pytest.raises(errors.InputError, match=r'train/lr: 0.1 there, 0.2 now'):
    run.claim({'data': {'seed': 0}, 'train': {'rounds': 5, 'lr': 0.2}})
  with pytest.raises(errors.InputError, match='train/rounds'):
    run.claim(more)
  with pytest.raises(errors.InputError, match='data/split'):
    run.claim({**settings, 'data': {'seed': 0, 'split': 'temporal'}})


def test_settings_of_the_earlier_layout_are_checked(tmp_path):
  (tmp_path / 'train_config.json').write_text(json.dumps({'lr': 0.1, 'rounds': None}))
  run = run_dir.RunDir(str(tmp_path))
  run.claim({'lr': 0.1, 'rounds': 40}, may_change=('rounds',))
  assert not (tmp_path / 'config.json').exists()
  assert run.read_json(run_dir.CONFIG) == {'lr': 0.1, 'rounds': None}
  with pytest.raises(errors.InputError, match='lr: 0.1 there, 0.3 now'):
    run.claim({'lr': 0.3})


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

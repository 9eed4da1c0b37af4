"""The binary `python -m tff_rec.demo`: its flags are checked before any training."""

import os

from tests.tff_rec import helpers
from tff_rec import synthetic


def test_bad_flags_and_an_unknown_user_stop_before_training(tmp_path):
  data_path = synthetic.write(synthetic.synthetic_ratings(), str(tmp_path / 'ml'), 'ml-latest')
  out = tmp_path / 'run'
  for flag, message in (
      ('--test_fraction=1.5', 'error: --test_fraction=1.5: expected a number in (0, 1)'),
      ('--seed=-1', 'error: --seed=-1: expected an integer >= 0'),
      ('--fedavg_rounds=0', 'error: --fedavg_rounds=0: expected an integer >= 1'),
      ('--user=999', 'error: --user=999: this user has no ratings of known items'),
  ):
    result = helpers.run_module('tff_rec.demo', f'--data={data_path}', f'--output_dir={out}',
                                flag)
    assert result.returncode == 2, (flag, result.stderr[-2000:])
    assert result.stderr.strip().splitlines()[-1].startswith(message), flag
    assert 'round 1/' not in result.stdout, flag
    assert not os.path.exists(out), flag

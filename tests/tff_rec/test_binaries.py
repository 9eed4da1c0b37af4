"""The binaries end to end: tff_rec.train, then tff_rec.evaluate, then tff_rec.recommend."""

from tests.tff_rec import helpers
from tff_rec import synthetic


def test_binaries_end_to_end(tmp_path):
  data_path = synthetic.write(synthetic.synthetic_ratings(), str(tmp_path / 'ml'), 'ml-1m')
  out = str(tmp_path / 'run')
  tiny = helpers.tiny_flags() + [f'--data={data_path}', f'--output_dir={out}']
  result = helpers.run_module('tff_rec.train', '--rounds=2', *tiny)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'round 2/2' in result.stdout
  result = helpers.run_module('tff_rec.evaluate', f'--output_dir={out}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert '| fedrecon |' in result.stdout and '| popularity |' in result.stdout
  result = helpers.run_module('tff_rec.recommend', f'--output_dir={out}', '--user=3', '--n=5')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.count('Movie ') == 5
  # A flag out of range: one line, exit 2.
  result = helpers.run_module('tff_rec.recommend', f'--output_dir={out}', '--user=3', '--n=-1')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == ['error: --n=-1: expected an integer >= 1']
  # The ratings file changed after training: evaluating on it is refused, not mixed.
  with open(data_path, 'a') as f:
    f.write('1::105::1::2000000\n')
  result = helpers.run_module('tff_rec.evaluate', f'--output_dir={out}')
  assert result.returncode == 2
  assert 'the ratings changed since its models were trained' in result.stderr
  assert 'Traceback' not in result.stderr

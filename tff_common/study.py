"""A study: a grid of runs (cells) repeated over seeds, resumable, summarized as mean ± sd.

What each job's study binary (`tff_credit.study`, `tff_rec.study`) is built on.
Runs in one orchestrator process; each cell is a job's own training and
evaluation (the job's library calls), in its own directory.

    OUTPUT_DIR/.lock              held by the study (two studies never share a directory)
    OUTPUT_DIR/config.json        what every cell shares (`fixed`) and the grid run so far
    OUTPUT_DIR/runs/<key>/        a cell's training directory (the job's run directory) and log.txt
    OUTPUT_DIR/cells/<key>.json   a finished cell: its parameters, seed, seconds and metrics
    OUTPUT_DIR/study.csv          one row per cell x metric (long: a spreadsheet's pivot table)
    OUTPUT_DIR/study_summary.csv  one row per group x metric: mean, sd, n
    OUTPUT_DIR/study.md, *.png    the job's tables and figures

A cell is named parameters (e.g. partition=iid) and a seed; its key is stable
(readable parameters and a hash of their exact values), so a rerun skips every
cell whose cells/<key>.json exists, and an interrupted cell starts again in its
directory, where the job resumes from its last checkpoint. A rerun may add
seeds or grid values; one whose shared settings differ (more rounds, other
data) is refused: its cells would not mean what the stored ones do.

Aggregation groups cells by their parameters without the seed: mean, sample
standard deviation (ddof=1) and n over the seeds, per metric. A metric a cell
did not measure (None or NaN) is left out of n, never counted as zero.

No TensorFlow here: the jobs' cells bring it.
"""

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import re
import signal
import time
import typing
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Optional

from tff_common import checks
from tff_common import errors
from tff_common import progress
from tff_common import run_dir as run_dir_lib

CELLS = 'cells'
RUNS = 'runs'
CELL_LOG = 'log.txt'
CSV = 'study.csv'
SUMMARY_CSV = 'study_summary.csv'
MARKDOWN = 'study.md'
SEED = 'seed'

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Cell:
  """One run of a study: named parameters (in the grid's order) and a seed."""
  params: tuple[tuple[str, Any], ...]
  seed: int

  @property
  def group(self) -> tuple[tuple[str, Any], ...]:
    """What the cell is averaged with: its parameters without the seed."""
    return self.params

  @property
  def key(self) -> str:
    """A file name that names the cell and stays the same across runs."""
    exact = json.dumps([list(p) for p in self.params] + [[SEED, self.seed]])
    readable = '_'.join([f'{name}-{value}' for name, value in self.params]
                        + [f'{SEED}-{self.seed}'])
    readable = re.sub(r'[^A-Za-z0-9.=+-]+', '_', readable)[:80]
    return f'{readable}_{hashlib.sha256(exact.encode()).hexdigest()[:8]}'

  @property
  def label(self) -> str:
    return ' '.join([f'{name}={value}' for name, value in self.params] + [f'{SEED}={self.seed}'])

  def value(self, name: str) -> Any:
    return self.seed if name == SEED else dict(self.params)[name]


@dataclasses.dataclass(frozen=True)
class Grid:
  """Every combination of `axes` (name -> values), for each seed.

  Cells are ordered seed by seed (the whole grid for the first seed, then the
  next), so a study stopped early has every setting at fewer seeds rather than
  some settings at every seed.
  """
  axes: tuple[tuple[str, tuple], ...]
  seeds: tuple[int, ...]

  @classmethod
  def of(cls, axes: Mapping[str, Sequence], *, seeds: Sequence[int]) -> 'Grid':
    return cls(axes=tuple((name, tuple(values)) for name, values in axes.items()),
               seeds=tuple(seeds))

  def cells(self) -> list[Cell]:
    names = [name for name, _ in self.axes]
    combinations = list(itertools.product(*(values for _, values in self.axes)))
    return [Cell(params=tuple(zip(names, combination)), seed=seed)
            for seed in self.seeds for combination in combinations]

  def describe(self) -> dict[str, list]:
    return {**{name: list(values) for name, values in self.axes}, SEED: list(self.seeds)}


@dataclasses.dataclass(frozen=True)
class Result:
  """A finished cell: its metrics (name -> number, None if not measured) and seconds."""
  cell: Cell
  metrics: dict[str, Optional[float]]
  seconds: float


@dataclasses.dataclass(frozen=True)
class Stat:
  """Mean, sample standard deviation (NaN below 2 values) and count of one metric."""
  mean: float
  sd: float
  n: int

  @classmethod
  def of(cls, values: Iterable[Optional[float]]) -> 'Stat':
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(present)
    if not n:
      return cls(math.nan, math.nan, 0)
    mean = math.fsum(present) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in present) / (n - 1)) if n > 1 else math.nan
    return cls(mean, sd, n)


def parse_seeds(flag: str, text: str) -> list[int]:
  """`--seeds`: 'N' is seeds 0..N-1; a list 'a,b,c' is those seeds (one seed s: 's,')."""
  text = str(text).strip()
  parts = [p.strip() for p in text.split(',')]
  try:
    if len(parts) == 1:
      count = int(parts[0])
      if count < 1:
        raise ValueError
      return list(range(count))
    seeds = [int(p) for p in parts if p]
  except ValueError:
    checks.fail(flag, text, 'a count of seeds (e.g. 5: seeds 0 to 4) or a list of seeds '
                '>= 0 (e.g. 0,3,7)')
  if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
    checks.fail(flag, text, 'a count of seeds (e.g. 5: seeds 0 to 4) or a list of distinct '
                'seeds >= 0 (e.g. 0,3,7)')
  return seeds


def apply_overrides(flag: str, items: Sequence[str], configs: Sequence[Any], *,
                    per_cell: Iterable[str] = ()) -> list[Any]:
  """FIELD=VALUE pairs (e.g. `--set=l2=0.001,dim=16`) onto the dataclass among
  `configs` that has FIELD (the first one), each VALUE parsed as its field's
  type; `per_cell` fields (what the grid sets) are refused."""
  configs = list(configs)
  per_cell = set(per_cell)
  for item in items:
    field, sep, text = str(item).partition('=')
    field = field.strip()
    owners = [i for i, c in enumerate(configs)
              if field in {f.name for f in dataclasses.fields(c)}]
    if not sep or not owners:
      names = sorted({f.name for c in configs for f in dataclasses.fields(c)} - per_cell)
      checks.fail(flag, item, 'FIELD=VALUE with FIELD one of ' + ', '.join(names))
    if field in per_cell:
      checks.fail(flag, item, f'another field: each cell sets {field}')
    i = owners[0]
    hint = typing.get_type_hints(type(configs[i]))[field]
    configs[i] = dataclasses.replace(configs[i], **{field: parse_value(flag, item, text.strip(),
                                                                       hint)})
  return configs


def parse_value(flag: str, item: str, text: str, hint) -> Any:
  """`text` as a value of the type `hint` (int, float, bool, str, list[str]
  as 'a;b', Optional[...] with 'none'); a bad value fails naming `flag`."""
  kind = hint
  if type(None) in typing.get_args(hint):  # Optional[X]
    if text.lower() in ('', 'none'):
      return None
    kind = next(a for a in typing.get_args(hint) if a is not type(None))
  try:
    if kind is bool:
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(text)
      return text.lower() in ('true', '1')
    if kind in (int, float, str):
      return kind(text)
    if typing.get_origin(kind) is list:
      return [p for p in text.split(';') if p]
  except ValueError:
    checks.fail(flag, item, f'a value of type {getattr(kind, "__name__", kind)}')
  return text


def run_study(*, cells: Sequence[Cell], run_cell: Callable[[Cell, str], Mapping[str, Any]],
              output_dir: str, fixed: Optional[Mapping[str, Any]] = None,
              fixed_defaults: Optional[Mapping[str, Any]] = None,
              log: Log = progress.print_flushed) -> list[Result]:
  """Runs every cell of `cells` not finished before; returns all their results.

  Args:
    cells: The cells, in the order to run them (e.g. `Grid.cells()`).
    run_cell: `(cell, cell_dir) -> {metric: number or None}`; trains and
      evaluates the cell in `cell_dir` (OUTPUT_DIR/runs/<key>), which may hold
      an interrupted attempt to resume. Its progress belongs in
      `cell_log(cell_dir)`, not on stdout: the study prints one line per cell.
    output_dir: The study's directory.
    fixed: The settings every cell shares (rounds, data, flags); stored in
      config.json, and a rerun with other values is refused.
    fixed_defaults: Settings-shaped values a directory written before a
      setting existed is taken to have had.
    log: Where the progress lines go.

  Raises:
    errors.InputError: another process holds `output_dir`; its cells were run
      with other `fixed` settings; a stored cell is unreadable; a cell failed
      on its input (the message names the cell).
    errors.Interrupted: SIGINT (exit code 130) or SIGTERM (143); the message
      names the cell and says that rerunning the command resumes.
  """
  root = run_dir_lib.RunDir(output_dir)
  with root.lock():
    _claim(root, fixed=dict(fixed or {}), defaults=dict(fixed_defaults or {}),
           grid=_describe(cells))
    stored = {cell.key: _load(root, cell) for cell in cells}
    todo = [cell for cell in cells if stored[cell.key] is None]
    done_before = len(cells) - len(todo)
    known = [r.seconds for r in stored.values() if r is not None]
    line = f'{len(cells)} cells in {output_dir}: {done_before} done before, {len(todo)} to run'
    if todo and known:
      line += f', ETA {_duration(len(todo) * sum(known) / len(known))}'
    log(line + (f"; each cell's log: {os.path.join(output_dir, RUNS, '<cell>', CELL_LOG)}"
                if todo else ''))
    results = dict(stored)
    ran = []
    for number, cell in enumerate(cells, start=1):
      if results[cell.key] is not None:
        continue
      results[cell.key] = _run_one(root, cell, run_cell, number=number, total=len(cells),
                                   finished=sum(r is not None for r in results.values()))
      ran.append(results[cell.key].seconds)
      left = sum(r is None for r in results.values())
      mean = sum(ran) / len(ran)
      log(f'cell {number}/{len(cells)} {cell.label}: {results[cell.key].seconds:.0f} s'
          + (f', ETA {_duration(left * mean)}' if left else ', all cells done'))
  return [results[cell.key] for cell in cells]


def cell_log(cell_dir: str) -> Log:
  """A log that appends each line to CELL_DIR/log.txt (the cell's job output)."""
  path = os.path.join(cell_dir, CELL_LOG)

  def log(line: str):
    os.makedirs(cell_dir, exist_ok=True)
    with open(path, 'a', encoding='utf-8') as f:
      f.write(f'{line}\n')

  return log


def _run_one(root: run_dir_lib.RunDir, cell: Cell, run_cell, *, number: int, total: int,
             finished: int) -> Result:
  cell_dir = os.path.join(root.path, RUNS, cell.key)
  where = f'cell {number}/{total} ({cell.label})'
  started = time.perf_counter()
  try:
    metrics = run_cell(cell, cell_dir)
  except (KeyboardInterrupt, errors.Interrupted) as e:
    code = e.exit_code if isinstance(e, errors.Interrupted) else 128 + signal.SIGINT
    # The job's own line ('interrupted after round 12; rerun ...') says where in the cell.
    inner = e.message.split(';')[0] if isinstance(e, errors.Interrupted) else ''
    when = f' {inner[len("interrupted "):]}' if inner.startswith('interrupted ') else ''
    raise errors.Interrupted(
        f'interrupted in {where}{when}; {finished} of {total} cells finished and kept; rerun '
        'the same command to resume (this cell from its last checkpoint)', code) from None
  except errors.InputError as e:
    # TrainingFailed keeps its class (and exit code); the message gains the cell.
    raise type(e)(f'{where}: {e}') from None
  seconds = time.perf_counter() - started
  result = Result(cell=cell, metrics=_numbers(metrics, where), seconds=seconds)
  root_cells = root.child(CELLS)
  root_cells.makedirs()
  root_cells.write_json(f'{cell.key}.json', {
      'params': dict(cell.params), SEED: cell.seed, 'seconds': seconds,
      'metrics': result.metrics})
  return result


def _numbers(metrics: Mapping[str, Any], where: str) -> dict[str, Optional[float]]:
  out = {}
  for name, value in metrics.items():
    if value is None:
      out[str(name)] = None
      continue
    try:
      number = float(value)
    except (TypeError, ValueError):
      raise TypeError(f'{where}: metric {name!r} is not a number: {value!r}') from None
    out[str(name)] = None if math.isnan(number) else number
  return out


def _load(root: run_dir_lib.RunDir, cell: Cell) -> Optional[Result]:
  path = os.path.join(root.path, CELLS, f'{cell.key}.json')
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      stored = json.load(f)
    metrics = stored['metrics']
    seconds = float(stored.get('seconds', 0.0))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise errors.InputError(f'{path}: unreadable ({type(e).__name__}: {e}); delete it to run '
                            'that cell again') from None
  return Result(cell=cell, metrics={k: (None if v is None else float(v))
                                    for k, v in metrics.items()}, seconds=seconds)


def _describe(cells: Sequence[Cell]) -> dict[str, list]:
  grid: dict[str, list] = {}
  for cell in cells:
    for name, value in list(cell.params) + [(SEED, cell.seed)]:
      values = grid.setdefault(name, [])
      if value not in values:
        values.append(value)
  return grid


def _claim(root: run_dir_lib.RunDir, *, fixed: dict, defaults: dict, grid: dict):
  """config.json: the shared settings must match; the grid's values accumulate."""
  path = root.file(run_dir_lib.CONFIG)
  # As stored (tuples become lists), so that a rerun compares like with like.
  fixed, defaults = (json.loads(json.dumps(v, default=_builtin)) for v in (fixed, defaults))
  previous_grid: dict[str, list] = {}
  if os.path.exists(path):
    stored = root.read_json(run_dir_lib.CONFIG)
    if not isinstance(stored, dict) or 'fixed' not in stored:
      raise errors.InputError(f'{path}: not the settings of a study; use a new --output_dir')
    before = run_dir_lib.flatten(stored['fixed'])
    now = run_dir_lib.flatten(fixed)
    predated = run_dir_lib.flatten(defaults)
    changed = sorted(k for k in set(before) | set(now)
                     if before.get(k) != now.get(k)
                     and not (k not in before and k in predated and now.get(k) == predated[k]))
    if changed:
      raise errors.InputError(
          f'{path}: the cells there were run with other settings ('
          + '; '.join(f'{k}: {before.get(k)!r} there, {now.get(k)!r} now' for k in changed)
          + '); use a new --output_dir or the same flags (only seeds and grid values may be '
          'added)')
    previous_grid = stored.get('grid', {})
    if previous_grid and set(previous_grid) != set(grid):
      raise errors.InputError(
          f'{path}: the cells there vary {", ".join(sorted(previous_grid))}, these vary '
          f'{", ".join(sorted(grid))}; use a new --output_dir')
  merged = {name: list(values) for name, values in previous_grid.items()}
  for name, values in grid.items():
    merged.setdefault(name, [])
    merged[name] += [v for v in values if v not in merged[name]]
  root.write_json(run_dir_lib.CONFIG, {'fixed': fixed, 'grid': merged})


def _builtin(value):
  """JSON for NumPy scalars a setting may hold."""
  if hasattr(value, 'item'):
    return value.item()
  raise TypeError(f'not JSON serializable: {type(value).__name__}')


def _duration(seconds: float) -> str:
  if seconds < 90:
    return f'{seconds:.0f} s'
  return f'{seconds / 60:.0f} min'


# Aggregation and outputs.


def aggregate(results: Sequence[Result]) -> dict[tuple, dict[str, Stat]]:
  """group (parameters without the seed) -> metric -> Stat over the seeds, in
  the order groups and metrics first appear."""
  values: dict[tuple, dict[str, list]] = {}
  for result in results:
    group = values.setdefault(result.cell.group, {})
    for name, value in result.metrics.items():
      group.setdefault(name, []).append(value)
  return {group: {name: Stat.of(v) for name, v in metrics.items()}
          for group, metrics in values.items()}


def fmt(stat: Optional[Stat], *, digits: int = 3, seeds: Optional[int] = None,
        signed: bool = False) -> str:
  """'0.837 ± 0.004' (and ' (n=3)' when fewer than `seeds` values); '—' if none."""
  if stat is None or stat.n == 0:
    return '—'
  sign = '+' if signed else ''
  text = f'{stat.mean:{sign}.{digits}f}'
  if stat.n > 1:
    text += f' ± {stat.sd:.{digits}f}'
  if seeds is not None and stat.n < seeds:
    text += f' (n={stat.n})'
  return text


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
  return (['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
          + ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows])


def write_outputs(output_dir: str, results: Sequence[Result], *, markdown: str,
                  figures: Mapping[str, Any] = (), log: Optional[Log] = None):
  """study.csv, study_summary.csv, study.md and each figure (name -> matplotlib
  figure, closed here), each written atomically; with `log`, the markdown and
  the list of files written go to it."""
  names = list(dict(figures))
  root = run_dir_lib.RunDir(output_dir)
  root.write_text(CSV, _long_csv(results))
  root.write_text(SUMMARY_CSV, _summary_csv(results))
  for name, figure in dict(figures).items():
    import matplotlib.pyplot as plt
    root.save_figure(name, figure, dpi=110)
    plt.close(figure)
  root.write_text(MARKDOWN, markdown)
  if log is not None:
    log(markdown)
    log(f'wrote {output_dir}/{MARKDOWN}, {CSV}, {SUMMARY_CSV}' + ''.join(f', {n}' for n in names))


def _axis_names(results: Sequence[Result]) -> list[str]:
  names: list[str] = []
  for result in results:
    names += [name for name, _ in result.cell.params if name not in names]
  return names


def _long_csv(results: Sequence[Result]) -> str:
  names = _axis_names(results)
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(names + [SEED, 'metric', 'value', 'cell_seconds'])
  for result in results:
    params = dict(result.cell.params)
    for metric, value in result.metrics.items():
      writer.writerow([params.get(n, '') for n in names]
                      + [result.cell.seed, metric, '' if value is None else repr(value),
                         f'{result.seconds:.1f}'])
  return out.getvalue()


def _summary_csv(results: Sequence[Result]) -> str:
  names = _axis_names(results)
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(names + ['metric', 'mean', 'sd', 'n'])
  for group, metrics in aggregate(results).items():
    params = dict(group)
    for metric, stat in metrics.items():
      writer.writerow([params.get(n, '') for n in names]
                      + [metric, '' if stat.n == 0 else repr(stat.mean),
                         '' if stat.n < 2 else repr(stat.sd), stat.n])
  return out.getvalue()


def bar_figure(*, categories: Sequence[str], series: Mapping[str, Sequence[Optional[Stat]]],
               title: str, ylabel: str, ylim: Optional[tuple[float, float]] = None):
  """Grouped bars (one group per category, one bar per series) of means, with
  ±sd error bars; a missing value leaves a gap. Returns the figure."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  import numpy as np
  width = 0.8 / max(1, len(series))
  figure, axis = plt.subplots(figsize=(max(6.0, 1.2 * len(categories) * max(1, len(series)) / 2),
                                       4.2))
  x = np.arange(len(categories))
  for i, (name, stats) in enumerate(series.items()):
    means = [s.mean if s is not None and s.n else np.nan for s in stats]
    sds = [s.sd if s is not None and s.n > 1 else 0.0 for s in stats]
    axis.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=sds, capsize=3,
             label=name)
  axis.set_xticks(x)
  axis.set_xticklabels(categories, rotation=20 if len(categories) > 4 else 0, ha='right'
                       if len(categories) > 4 else 'center')
  axis.set(title=title, ylabel=ylabel)
  if ylim is not None:
    axis.set_ylim(*ylim)
  axis.grid(axis='y', alpha=0.3)
  axis.legend(fontsize=8)
  figure.tight_layout()
  return figure


def goal_line(name: str, status: Optional[bool], detail: str) -> str:
  """One line of a 'goals' section: met, not met, or not measurable (None)."""
  word = 'not measurable' if status is None else ('met' if status else 'not met')
  return f'- {name}: **{word}**: {detail}'

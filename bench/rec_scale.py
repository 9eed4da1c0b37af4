r"""Scale of the recommendation job (issue 13): seconds per round and memory.

    .venv/bin/python bench/rec_scale.py --output_dir=/tmp/rec_scale
    .venv/bin/python bench/rec_scale.py --output_dir=/tmp/rec_scale --parts=population \
        --populations=1000,100000 --rounds=2

Every cell runs in a fresh subprocess (one TFF runtime per process, and a
clean peak RSS): the job's own FedRecon (`tff_rec.algorithms.build_process`,
the default `TrainConfig`: dim 32, 3 unrated items per rating) and client data
(`tff_rec.clients.training_data_fn`) on `tff_rec.synthetic.SyntheticPopulation`
(1000 items; users made on demand, 20-100 ratings each), sampled by
`tff_common.program.sample_clients`. A round is timed in three parts: sampling
(orchestrator), building the sampled users' datasets (orchestrator), and the
TFF call `process.next` (datasets serialized, client work on the workers, the
aggregate and the server update). `--warmup_rounds` rounds (tracing, worker
start-up) are not counted; s/round is the median of the `--rounds` after them.
Not included: per-round evaluation and checkpoints (`tff_rec.training` adds
them; its per-round test RMSE reconstructs every training user, which is
O(population) and is left out here on purpose).

  throughput  (a) `--throughput_users` users, `--clients` per round, on 1 and
              2 local workers (`--workers`; TFF's mergeable form splits the
              clients into one chunk per worker). From the 1-worker cells,
              call(C) = a + b*C (least squares over C: a the fixed cost of a
              call, b the per-client cost on one worker of this machine) and
              d, the orchestrator's dataset cost per client; from the
              2-worker cells, m = mean over C of call_2(C) - (a + b*C/2), the
              cost of splitting and merging one more worker. Projected
              s/round on W machines like this one, each running one worker:
                  T_W(C) = s + d*C + a + b*C/W + m*(W-1)
              (s: sampling; d*C stays on the one orchestrator).
  paired      the `--populations` trained in turn, round by round, in one
              process (so under the same load): s/round of each.
  fixed       `--population_clients` users of `--throughput_users`, each cut to
              one example: the per-client cost of TFF's client work whatever
              the data, against the same round with all their examples.
  population  (b) `--populations` users at `--population_clients` per round on
              one worker: peak RSS (VmHWM) of the orchestrator and of the
              worker, and s/round. Goal: both grow by at most 1.2x from the
              smallest to the largest population.

Writes OUTPUT_DIR/cells/<cell>.json (a finished cell is not rerun),
rec_scale.csv, rec_scale.md and rec_scale.json. Time figures are noisy on a
shared machine: compare ratios measured in one run. Asserts nothing.
"""

import csv
import json
import os
import subprocess
import sys
import time

from absl import flags

from tff_common import checks
from tff_common import cli
from tff_common import progress

# A cell is this script run again with --cell=JSON; only cells run TFF.
_IS_CELL = any(arg.startswith('--cell') for arg in sys.argv[1:])

PARTS = ('throughput', 'population', 'fixed', 'paired')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Cells and the tables.')
_PARTS = flags.DEFINE_list('parts', list(PARTS), f'Which of {", ".join(PARTS)} to run.')
_CLIENTS = flags.DEFINE_list('clients', ['50', '100', '200'], '(a) Clients per round.')
_WORKERS = flags.DEFINE_list('workers_to_try', ['1', '2'], '(a) Local workers.')
_THROUGHPUT_USERS = flags.DEFINE_integer('throughput_users', 10_000, '(a) Population size.')
_POPULATIONS = flags.DEFINE_list('populations', ['1000', '10000', '100000'],
                                 '(b) Population sizes.')
_POPULATION_CLIENTS = flags.DEFINE_integer('population_clients', 50, '(b) Clients per round.')
_ITEMS = flags.DEFINE_integer('num_items', 1000, 'Items of the synthetic catalogue.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Rounds measured per cell.')
_WARMUP = flags.DEFINE_integer('warmup_rounds', 1, 'Rounds run before measuring.')
_PAIRED_ROUNDS = flags.DEFINE_integer('paired_rounds', 5, '(paired) Rounds measured per size.')
_SORT_ONCE = flags.DEFINE_bool('sort_ids_once', False,
                               '(paired) Sort the client ids once, not every round (as '
                               'tff_common.program would with the h6 sample-once patch).')
_CELL = flags.DEFINE_string('cell', None, 'Internal: run one cell (JSON) and print its result.')

CELLS = 'cells'
COLUMNS = ('part', 'users', 'clients', 'workers', 'rounds', 'ratings_per_round', 's_per_round',
           'sample_s', 'data_s',
           'call_s', 'orchestrator_cpu_s', 'worker_cpu_s', 'orchestrator_hwm_mb',
           'worker_hwm_mb', 'orchestrator_rss_before_population_mb')


# ---------------------------------------------------------------- one cell


def _status_mb(pid, key: str) -> float:
  with open(f'/proc/{pid}/status') as f:
    for line in f:
      if line.startswith(key + ':'):
        return int(line.split()[1]) / 1024
  return float('nan')


def _cpu_s(pid) -> float:
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run_cell(cell: dict) -> dict:
  """Trains `warmup + rounds` rounds of FedRecon on a fresh population; the
  figures of the measured rounds."""
  import numpy as np

  from tff_common import program
  from tff_common import runtime
  from tff_rec import algorithms
  from tff_rec import clients
  from tff_rec import config as config_lib
  from tff_rec import synthetic

  before = _status_mb('self', 'VmRSS')
  population = synthetic.SyntheticPopulation(cell['users'], num_items=cell['num_items'], seed=0)
  config = config_lib.TrainConfig(clients_per_round=cell['clients'])
  process, _ = algorithms.build_process(population, config)
  client_data_fn = clients.training_data_fn(
      population.train, batch_size=config.examples_per_batch(), seed=config.seed,
      num_items=population.num_items, negatives_per_rating=config.negatives())
  ids = population.client_ids()
  workers = [w.pid for w in runtime.workers()]
  state = process.initialize()
  rows = []
  for round_num in range(1, cell['warmup'] + cell['rounds'] + 1):
    cpu = (_cpu_s('self'), sum(_cpu_s(pid) for pid in workers))
    start = time.perf_counter()
    sampled = program.sample_clients(ids, clients_per_round=cell['clients'], seed=config.seed,
                                     round_num=round_num)
    sampled_at = time.perf_counter()
    datasets = client_data_fn(sampled, round_num)
    if cell.get('one_example'):
      # What a client costs whatever its data: each user's first example only.
      datasets = [ds.unbatch().take(1).batch(config.examples_per_batch()) for ds in datasets]
    built_at = time.perf_counter()
    state = process.next(state, datasets).state
    done = time.perf_counter()
    if round_num > cell['warmup']:
      ratings = sum(len(population.train.items_of(population.train.position(int(cid))))
                    for cid in sampled)
      rows.append((done - start, sampled_at - start, built_at - sampled_at, done - built_at,
                   _cpu_s('self') - cpu[0], sum(_cpu_s(pid) for pid in workers) - cpu[1],
                   ratings))
  median = np.median(np.array(rows), axis=0)
  return dict(
      cell, s_per_round=median[0], sample_s=median[1], data_s=median[2], call_s=median[3],
      orchestrator_cpu_s=median[4], worker_cpu_s=median[5], ratings_per_round=median[6],
      orchestrator_hwm_mb=_status_mb('self', 'VmHWM'),
      worker_hwm_mb=max(_status_mb(pid, 'VmHWM') for pid in workers),
      orchestrator_rss_before_population_mb=before,
      round_seconds=[row[0] for row in rows])


def run_paired(cell: dict) -> dict:
  """Rounds on every population size in turn, in one process (one process,
  one model state per size, the same load for all): s/round per size."""
  import numpy as np

  from tff_common import program
  from tff_rec import algorithms
  from tff_rec import clients
  from tff_rec import config as config_lib
  from tff_rec import synthetic

  config = config_lib.TrainConfig(clients_per_round=cell['clients'])
  sizes = cell['sizes']
  populations = [synthetic.SyntheticPopulation(n, num_items=cell['num_items'], seed=0)
                 for n in sizes]
  # The model depends on the population only through num_items and the mean rating.
  process, _ = algorithms.build_process(populations[0], config)
  data_fns = [clients.training_data_fn(
      p.train, batch_size=config.examples_per_batch(), seed=config.seed, num_items=p.num_items,
      negatives_per_rating=config.negatives()) for p in populations]
  # --sort_ids_once: what tff_common.program does with the patch that sorts the
  # ids once per run (today it sorts them every round: O(population) a round).
  ids = [sorted(p.client_ids()) if cell.get('sort_ids_once') else p.client_ids()
         for p in populations]
  states = [process.initialize() for _ in sizes]
  times = [[] for _ in sizes]
  for round_num in range(1, cell['warmup'] + cell['rounds'] + 1):
    for i in range(len(sizes)):
      start = time.perf_counter()
      sampled = program.sample_clients(ids[i], clients_per_round=cell['clients'],
                                       seed=config.seed, round_num=round_num)
      states[i] = process.next(states[i], data_fns[i](sampled, round_num)).state
      if round_num > cell['warmup']:
        times[i].append(time.perf_counter() - start)
  return dict(cell, paired_s_per_round=[float(np.median(t)) for t in times],
              paired_round_seconds=times)


def cell_main(argv):
  del argv
  cell = json.loads(_CELL.value)
  result = run_paired(cell) if cell['part'] == 'paired' else run_cell(cell)
  print('CELL ' + json.dumps({k: float(v) if hasattr(v, 'dtype') else v
                              for k, v in result.items()}), flush=True)


# ---------------------------------------------------------------- the study


def _ints(flag: str, values) -> list[int]:
  for value in values:
    if not value.strip().isdigit() or int(value) < 1:
      checks.fail(flag, ','.join(values), 'a comma-separated list of integers >= 1')
  return [int(v) for v in values]


def _cells() -> list[dict]:
  common = dict(num_items=_ITEMS.value, rounds=_ROUNDS.value, warmup=_WARMUP.value)
  cells = []
  if 'population' in _PARTS.value:
    for users in _ints('populations', _POPULATIONS.value):
      cells.append(dict(common, part='population', users=users,
                        clients=_POPULATION_CLIENTS.value, workers=1))
  if 'throughput' in _PARTS.value:
    for workers in _ints('workers_to_try', _WORKERS.value):
      for clients in _ints('clients', _CLIENTS.value):
        cells.append(dict(common, part='throughput', users=_THROUGHPUT_USERS.value,
                          clients=clients, workers=workers))
  if 'paired' in _PARTS.value:
    cells.append(dict(common, rounds=_PAIRED_ROUNDS.value, part='paired', users=0,
                      sizes=_ints('populations', _POPULATIONS.value),
                      clients=_POPULATION_CLIENTS.value, workers=1,
                      sort_ids_once=_SORT_ONCE.value))
  if 'fixed' in _PARTS.value:
    cells.append(dict(common, part='fixed', users=_THROUGHPUT_USERS.value,
                      clients=_POPULATION_CLIENTS.value, workers=1, one_example=True))
  return cells


def _name(cell: dict) -> str:
  return (f'{cell["part"]}_u{cell["users"]}_c{cell["clients"]}_w{cell["workers"]}'
          f'_i{cell["num_items"]}_r{cell["rounds"]}_wu{cell["warmup"]}'
          + ('_sorted' if cell.get('sort_ids_once') else ''))


def _run(cell: dict, log) -> dict:
  path = os.path.join(_OUTPUT_DIR.value, CELLS, _name(cell) + '.json')
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  log(f'cell {_name(cell)} ...')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  started = time.perf_counter()
  done = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f'--cell={json.dumps(cell)}',
       f'--local_workers={cell["workers"]}'],
      cwd=root, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=root))
  lines = [line for line in done.stdout.splitlines() if line.startswith('CELL ')]
  if done.returncode or not lines:
    raise RuntimeError(f'cell {_name(cell)} failed (exit {done.returncode}):\n'
                       f'{done.stderr[-3000:]}')
  result = json.loads(lines[-1][len('CELL '):])
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, path)
  if cell['part'] == 'paired':
    log('  s/round ' + ', '.join(f'{n:,} users {t:.2f}' for n, t in
                                 zip(cell['sizes'], result['paired_s_per_round'])))
  else:
    log(f'  {result["s_per_round"]:.2f} s/round (data {result["data_s"]:.2f}, call '
        f'{result["call_s"]:.2f}), peak RSS {result["orchestrator_hwm_mb"]:.0f} MB, '
        f'{time.perf_counter() - started:.0f} s')
  return result


def _fit(points):
  """Least squares y = a + b x over (x, y) points: (a, b)."""
  import numpy as np
  x, y = np.array(points, dtype=float).T
  if len(set(x)) < 2:
    return float(y.mean()), 0.0
  b, a = np.polyfit(x, y, 1)
  return float(a), float(b)


def projection(results: list[dict]) -> dict:
  """The per-client and fixed costs of (a), and T_W(C) for W machines."""
  import numpy as np
  one = [r for r in results if r['part'] == 'throughput' and r['workers'] == 1]
  two = [r for r in results if r['part'] == 'throughput' and r['workers'] == 2]
  if len(one) < 2:
    return {}
  a, b = _fit([(r['clients'], r['call_s']) for r in one])
  d = float(np.mean([r['data_s'] / r['clients'] for r in one]))
  s = float(np.mean([r['sample_s'] for r in one]))
  m = float(np.mean([r['call_s'] - (a + b * r['clients'] / 2) for r in two])) if two else None
  table, bound = {}, {}
  for machines in (1, 2, 4, 8, 16):
    for clients in (50, 100, 200, 1000):
      table[f'{machines}:{clients}'] = (s + d * clients + a + b * clients / machines
                                        + max(m or 0.0, 0.0) * (machines - 1))
      bound[f'{machines}:{clients}'] = s + d * clients + a + b * clients / machines
  return dict(fixed_call_s=a, per_client_call_s=b, per_client_data_s=d, sample_s=s,
              merge_per_extra_worker_s=m, projected=table, projected_without_merge=bound)


def _cpu(r: dict) -> float:
  return r['orchestrator_cpu_s'] + r['worker_cpu_s']


def _markdown(results: list[dict], fit: dict) -> str:
  lines = ['# rec_scale: FedRecon rounds at scale (bench/rec_scale.py)', '',
           'Synthetic population (`tff_rec.synthetic.SyntheticPopulation`), the job\'s FedRecon '
           'and client data with the default TrainConfig; s/round = median of the measured '
           'rounds after warm-up (sampling + datasets + TFF call); CPU seconds summed per round '
           '(orchestrator; all workers).', '']
  through = [r for r in results if r['part'] == 'throughput']
  if through:
    lines += [f'## (a) clients per round x local workers ({through[0]["users"]:,} users)', '',
              '| workers | clients | s/round | data s | call s | call s / client | '
              'orch CPU s | worker CPU s | worker CPU / client |',
              '|---|---|---|---|---|---|---|---|---|']
    for r in through:
      lines.append(f'| {r["workers"]} | {r["clients"]} | {r["s_per_round"]:.2f} | '
                   f'{r["data_s"]:.2f} | {r["call_s"]:.2f} | '
                   f'{r["call_s"] / r["clients"] * 1000:.0f} ms | '
                   f'{r["orchestrator_cpu_s"]:.2f} | {r["worker_cpu_s"]:.2f} | '
                   f'{r["worker_cpu_s"] / r["clients"] * 1000:.0f} ms |')
    by = {(r['workers'], r['clients']): r for r in through}
    ratios = [f'C={c}: {by[(1, c)]["s_per_round"] / by[(2, c)]["s_per_round"]:.2f}x'
              for (w, c) in sorted(by) if w == 2 and (1, c) in by]
    if ratios:
      lines += ['', 'Speed-up of 2 local workers over 1 on this 2-core machine: ' +
                ', '.join(ratios) + '.']
  if fit:
    m = fit['merge_per_extra_worker_s']
    lines += ['', '### Projection to W machines', '',
              'T_W(C) = s + d·C + a + b·C/W + m·(W−1), fitted on the cells above: '
              f'a = {fit["fixed_call_s"]:.3f} s (fixed cost of a TFF call), '
              f'b = {fit["per_client_call_s"] * 1000:.1f} ms per client (one worker of this '
              f'machine), d = {fit["per_client_data_s"] * 1000:.1f} ms per client (datasets, '
              f'on the orchestrator: not divided), s = {fit["sample_s"] * 1000:.1f} ms '
              '(sampling), m = ' + (f'{m:.3f} s' if m is not None else 'not measured') +
              ' (splitting/merging per extra worker, from the 2-worker cells: '
              'call_2(C) − (a + b·C/2)).', '',
              'Each entry: T_W with the measured m (here m includes the two workers sharing '
              'this machine\'s 2 cores, so it is an upper bound) / with m = 0 (a lower bound).',
              '', '| machines W | C=50 | C=100 | C=200 | C=1000 |', '|---|---|---|---|---|']
    for machines in (1, 2, 4, 8, 16):
      lines.append(f'| {machines} | ' + ' | '.join(
          f'{fit["projected"][f"{machines}:{c}"]:.2f} / '
          f'{fit["projected_without_merge"][f"{machines}:{c}"]:.2f}'
          for c in (50, 100, 200, 1000)) + ' |')
  fixed = [r for r in results if r['part'] == 'fixed']
  full = [r for r in results if r['part'] in ('throughput', 'population') and r['workers'] == 1
          and r['clients'] == fixed[0]['clients'] and r['users'] == fixed[0]['users']] if fixed else []
  if fixed:
    r = fixed[0]
    lines += ['', f'## What a client costs whatever its data ({r["clients"]} clients, 1 worker)',
              '', f'Every sampled user cut to 1 example: {r["call_s"]:.2f} s per TFF call, worker '
              f'CPU {r["worker_cpu_s"] / r["clients"] * 1000:.0f} ms per client' +
              (f'; with all their examples: {full[0]["call_s"]:.2f} s, worker CPU '
               f'{full[0]["worker_cpu_s"] / full[0]["clients"] * 1000:.0f} ms per client'
               if full else '') + '.']
  paired = [r for r in results if r['part'] == 'paired']
  if paired:
    r = paired[0]
    lines += ['', f'## (b) s/round of the population sizes in turn, in one process '
              f'({r["clients"]} clients per round, {r["rounds"]} rounds each'
              f'{", ids sorted once" if r.get("sort_ids_once") else ""})', '',
              '| users | ' + ' | '.join(f'{n:,}' for n in r['sizes']) + ' |',
              '|---|' + '---|' * len(r['sizes']),
              '| s/round | ' + ' | '.join(f'{t:.2f}' for t in r['paired_s_per_round']) + ' |',
              '', f'From {r["sizes"][0]:,} to {r["sizes"][-1]:,} users: s/round x'
              f'{r["paired_s_per_round"][-1] / r["paired_s_per_round"][0]:.2f} (the same load '
              'for every size: the fair comparison of time).']
  pops = sorted((r for r in results if r['part'] == 'population'), key=lambda r: r['users'])
  if pops:
    lines += ['', f'## (b) population size at {pops[0]["clients"]} clients per round, 1 worker',
              '', '| users | train ratings / round | s/round | sample s | data s | call s | '
              'CPU s/round (orch + worker) | orchestrator peak RSS MB | worker peak RSS MB | '
              'orchestrator RSS before the population MB |',
              '|---|---|---|---|---|---|---|---|---|---|']
    for r in pops:
      lines.append(f'| {r["users"]:,} | {r.get("ratings_per_round", 0):.0f} | '
                   f'{r["s_per_round"]:.2f} | {r["sample_s"]:.3f} | '
                   f'{r["data_s"]:.2f} | {r["call_s"]:.2f} | {_cpu(r):.2f} | '
                   f'{r["orchestrator_hwm_mb"]:.0f} | {r["worker_hwm_mb"]:.0f} | '
                   f'{r["orchestrator_rss_before_population_mb"]:.0f} |')
    if len(pops) > 1:
      small, large = pops[0], pops[-1]
      growth = {key: large[key] / small[key]
                for key in ('s_per_round', 'orchestrator_hwm_mb', 'worker_hwm_mb')}
      growth['cpu'] = _cpu(large) / _cpu(small)
      memory = growth['orchestrator_hwm_mb'] <= 1.2 and growth['worker_hwm_mb'] <= 1.2
      lines += ['', f'From {small["users"]:,} to {large["users"]:,} users: s/round x'
                f'{growth["s_per_round"]:.2f} (CPU s/round x{growth["cpu"]:.2f}), orchestrator '
                f'peak RSS x{growth["orchestrator_hwm_mb"]:.2f}, worker peak RSS x'
                f'{growth["worker_hwm_mb"]:.2f}. Goal (<= 1.2x): memory '
                f'{"met" if memory else "NOT met"}. Times here come from separate processes '
                'run minutes apart, so they move with the machine\'s load; the paired table '
                'compares time.']
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  if not _OUTPUT_DIR.value:
    checks.fail('output_dir', '', 'a directory for the cells and tables')
  for part in _PARTS.value:
    checks.one_of('parts', part, PARTS)
  for flag, value in (('rounds', _ROUNDS.value), ('paired_rounds', _PAIRED_ROUNDS.value),
                      ('num_items', _ITEMS.value),
                      ('throughput_users', _THROUGHPUT_USERS.value),
                      ('population_clients', _POPULATION_CLIENTS.value)):
    checks.at_least(flag, value, 1)
  checks.at_least('warmup_rounds', _WARMUP.value, 0)
  cells = _cells()
  os.makedirs(os.path.join(_OUTPUT_DIR.value, CELLS), exist_ok=True)
  log = progress.print_flushed
  results = [_run(cell, log) for cell in cells]
  fit = projection(results)
  text = _markdown(results, fit)
  with open(os.path.join(_OUTPUT_DIR.value, 'rec_scale.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(_OUTPUT_DIR.value, 'rec_scale.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(results)
  with open(os.path.join(_OUTPUT_DIR.value, 'rec_scale.json'), 'w') as f:
    json.dump({'cells': results, 'projection': fit}, f, indent=1)
  print(text)
  log(f'wrote rec_scale.md, rec_scale.csv, rec_scale.json in {_OUTPUT_DIR.value}')


if __name__ == '__main__':
  if _IS_CELL:
    cli.run(cell_main)
  else:
    cli.run(main, federated=False)

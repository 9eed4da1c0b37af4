r"""The privacy-utility curves of issue 12: epsilon against model quality.

    .venv/bin/python bench/privacy_utility.py --output_dir=/tmp/pu
    .venv/bin/python bench/privacy_utility.py --output_dir=/tmp/pu --jobs=credit
    .venv/bin/python bench/privacy_utility.py --output_dir=/tmp/pu --jobs=rec --rec_parts=tune \
        --rec_tune_dim=8,32 --rec_tune_implicit_weight=0,40 --rec_tune_adaptive_quantile=none,0.5
    .venv/bin/python bench/privacy_utility.py --output_dir=/tmp/pu --jobs=synthetic \
        --synthetic_populations=3000,10000,100000 --synthetic_sampling_rate=0.01

Three studies (`--jobs`), each a set of cells; a cell is one training run
(the library calls behind `tff_credit.train` / `tff_rec.train`, in this
process, into OUTPUT_DIR/<job>/<cell>) and its measurement, cell.json. A cell
whose cell.json exists is skipped, so a rerun resumes where the last one
stopped (an interrupted bundled training resumes from its checkpoint).
Several processes may share an OUTPUT_DIR if they train different cells
(e.g. `--rec_parts=baseline` in one, `--rec_parts=tune` in another).

  credit     customer-level (DP-SGD inside the banks, `--dp_level=record`) at
             each `--credit_epsilons` (delta 1e-5) and bank-level (the DP mean
             over the 5 banks) at each `--credit_bank_noise`, against
             non-private FedAvg (epsilon = inf, the job's defaults). First a
             tuning sweep at `--credit_tune_epsilon` over clip x client lr x
             local epochs x batch size; the record-level curve then uses the
             setting with the best pooled AUC. Measures the pooled test AUC
             and every bank's test AUC and epsilon.
  rec        FedRecon with user-level DP on the bundled MovieLens (Poisson
             sampling, `--rec_clients_per_round` per round) at each
             `--rec_epsilons`, against non-private FedRecon (its defaults).
             First a tuning sweep (`--rec_tune_*`: server lr x clip x adaptive
             clipping x model dimension x implicit-head weight, short runs at
             one epsilon); the curve uses the best, with a non-private run of
             the same model when it is not the default one. Measures the
             training users' test RMSE and HR@10 (NumPy, on-device
             reconstruction: `tff_rec.evaluation.mf_metrics`, the figures
             `tff_rec.report` prints, without its centralized baseline).
  synthetic  the same FedRecon on `tff_rec.synthetic.SyntheticPopulation`
             (users made on demand, 20-100 ratings each, `--synthetic_items`
             items), for each of `--synthetic_populations` N with q N users
             a round (Poisson, q = `--synthetic_sampling_rate`): at each
             `--synthetic_epsilons` and without DP, scored on the test ratings
             of `--synthetic_eval_users` of its users. No per-round
             evaluation or checkpoint: a cell reruns whole.

Noise-equivalent runs (synthetic). A deployment whose q N exceeds
`--synthetic_run_clients` (m_run) is trained with m_run users a round of the
same population and noise multiplier z m_run / (q N): the same noise on the
averaged update as the deployment (z clip / (q N)), with its epsilon, delta
and z reported; only the sampling variance of the average is larger, so such
a row understates the deployment's utility, if anything.

Writes privacy_utility.csv (one row per cell), privacy_utility.md (the
tables and whether each goal is met) and privacy_utility_{credit,rec}.png.
Asserts nothing: the tests check the mechanisms; this measures them.
"""

import csv
import itertools
import json
import math
import os
import time

from absl import flags

from tff_common import checks
from tff_common import cli
from tff_common import files
from tff_common import run_dir

JOBS = ('credit', 'rec', 'synthetic')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Runs, cells and the outputs.',
                                  required=True)
_JOBS = flags.DEFINE_list('jobs', list(JOBS), f'Studies to run, of {", ".join(JOBS)}; the '
                          'outputs cover every finished cell of every study.')
_REPORT_ONLY = flags.DEFINE_bool('report_only', False,
                                 'Train nothing: write the outputs from finished cells.')
# Credit.
_CREDIT_EPSILONS = flags.DEFINE_list('credit_epsilons', ['0.5', '1', '3', '10', '30'],
                                     'Customer-level target epsilons (delta 1e-5).')
_CREDIT_BANK_NOISE = flags.DEFINE_list(
    'credit_bank_noise', ['1', '2', '4', '8'],
    'Bank-level noise multipliers (all 5 banks every round: epsilon 49, 19, 8.1, 3.6 '
    'at delta 1e-5 over 40 rounds).')
_CREDIT_BANK_CLIP = flags.DEFINE_float('credit_bank_clip', 1.0, 'Bank-level update clip.')
_CREDIT_ROUNDS = flags.DEFINE_integer('credit_rounds', 40, 'Rounds of every credit run.')
_CREDIT_TUNE_EPSILON = flags.DEFINE_float('credit_tune_epsilon', 3.0,
                                          'The customer-level epsilon the sweep tunes at.')
_CREDIT_TUNE_CLIP = flags.DEFINE_list('credit_tune_dp_clip', ['0.5', '1', '2'],
                                      'Per-example clip norms to try.')
_CREDIT_TUNE_LR = flags.DEFINE_list('credit_tune_client_lr', ['0.1', '0.3'],
                                    'Client learning rates to try.')
_CREDIT_TUNE_EPOCHS = flags.DEFINE_list('credit_tune_local_epochs', ['1'],
                                        'Local epochs to try.')
_CREDIT_TUNE_BATCH = flags.DEFINE_list('credit_tune_batch_size', ['32'],
                                       'Expected DP-SGD batch sizes to try (<= 67, the '
                                       'smallest bank).')
# Recommendation, bundled data.
_REC_EPSILONS = flags.DEFINE_list('rec_epsilons', ['1', '3', '10', '30'],
                                  'User-level target epsilons (delta 1e-3).')
_REC_ROUNDS = flags.DEFINE_integer('rec_rounds', 100, 'Rounds of the curve (and its baseline).')
_REC_CLIENTS = flags.DEFINE_integer('rec_clients_per_round', 50,
                                    'Expected users per round (Poisson sampling).')
_REC_TUNE_EPSILON = flags.DEFINE_float('rec_tune_epsilon', 10.0,
                                       'The epsilon the sweep tunes at (for its rounds).')
_REC_TUNE_ROUNDS = flags.DEFINE_integer('rec_tune_rounds', 20, 'Rounds of a tuning run.')
_REC_TUNE_SERVER_LR = flags.DEFINE_list('rec_tune_server_lr', ['3', '10'],
                                        'DP server learning rates to try.')
_REC_TUNE_CLIP = flags.DEFINE_list('rec_tune_dp_clip', ['0.1', '0.5'],
                                   'User update clip norms to try (adaptive: the first clip).')
_REC_TUNE_QUANTILE = flags.DEFINE_list(
    'rec_tune_adaptive_quantile', ['none'],
    "Adaptive clipping to try: 'none' (fixed clip) or target quantiles of the update norms.")
_REC_TUNE_DIM = flags.DEFINE_list('rec_tune_dim', ['32'],
                                  'Model dimensions to try (the noise is on every item '
                                  'parameter: fewer parameters, less noise).')
_REC_TUNE_IMPLICIT = flags.DEFINE_list('rec_tune_implicit_weight', ['40'],
                                       'Implicit-head weights to try (0: no implicit head).')
REC_PARTS = ('baseline', 'tune', 'curve')
_REC_PARTS = flags.DEFINE_list(
    'rec_parts', list(REC_PARTS),
    'Parts of the bundled study to train (several processes may share --output_dir, '
    'each training other parts): baseline (non-private at --rec_rounds), tune (the sweep), '
    'curve (the best setting of the sweep at each epsilon; finished sweep cells count).')
# Recommendation, synthetic population (tff_rec.synthetic.SyntheticPopulation).
_SYN_POPULATIONS = flags.DEFINE_list('synthetic_populations', ['3000', '10000', '30000', '100000'],
                                     'Population sizes N (users made on demand).')
_SYN_RATE = flags.DEFINE_float('synthetic_sampling_rate', 0.01,
                               'q: each user takes part in a round with this probability '
                               '(Poisson), so a deployment has q x N users per round.')
_SYN_RUN_CLIENTS = flags.DEFINE_integer(
    'synthetic_run_clients', 100,
    'At most this many users per round are trained on; a deployment with more runs '
    'noise-equivalent (see the module docstring).')
_SYN_ITEMS = flags.DEFINE_integer('synthetic_items', 1000, 'Items of the synthetic catalogue.')
_SYN_EPSILONS = flags.DEFINE_list('synthetic_epsilons', ['10'],
                                  'User-level epsilons (delta: below 1/population).')
_SYN_ROUNDS = flags.DEFINE_integer('synthetic_rounds', 50, 'Rounds of every synthetic run.')
_SYN_SERVER_LR = flags.DEFINE_float('synthetic_server_lr', 10.0, 'Server lr of the DP runs.')
_SYN_BASELINE_LR = flags.DEFINE_float('synthetic_baseline_server_lr', 10.0,
                                      'Server lr of the non-private runs (example-weighted).')
_SYN_CLIP = flags.DEFINE_float('synthetic_dp_clip', 0.5,
                               'Clip norm of the DP runs (adaptive: the first clip).')
_SYN_QUANTILE = flags.DEFINE_float('synthetic_adaptive_quantile', None,
                                   'Adaptive clipping of the DP runs; unset: a fixed clip.')
_SYN_DIM = flags.DEFINE_integer('synthetic_dim', 32, 'Model dimension (DP and non-private).')
_SYN_IMPLICIT = flags.DEFINE_float('synthetic_implicit_weight', 40.0,
                                   'Implicit-head weight (0: none), DP and non-private.')
_SYN_EVAL_USERS = flags.DEFINE_integer('synthetic_eval_users', 500,
                                       'Training users whose test ratings score a run.')
SYN_PARTS = ('dp', 'baseline')
_SYN_PARTS = flags.DEFINE_list('synthetic_parts', list(SYN_PARTS),
                               'Cells to train: dp (each epsilon), baseline (non-private); '
                               'finished cells of the others are read.')

CELL = 'cell.json'          # a finished cell's measurement, next to its run
CREDIT_DELTA = 1e-5
CREDIT_GOAL = {'epsilon': 3.0, 'auc_cost': 0.03}
REC_GOAL = {'epsilon': 10.0, 'rmse_cost': 0.05}
COLUMNS = ('job', 'study', 'cell', 'level', 'epsilon', 'delta', 'noise_multiplier', 'sampling',
           'population', 'clients_per_round', 'rounds', 'dp_clip', 'adaptive_quantile',
           'last_clip', 'dim', 'implicit_weight', 'client_lr', 'server_lr',
           'local_epochs', 'batch_size', 'pooled_auc', 'auc_cost', 'bank_auc', 'bank_epsilon',
           'test_rmse', 'rmse_cost', 'hr@10', 'run_population', 'run_clients_per_round',
           'run_noise_multiplier', 'seconds')


def _floats(flag: str, values) -> list[float]:
  out = []
  for value in values:
    try:
      number = float(value)
    except ValueError:
      checks.fail(flag, ','.join(values), 'a comma-separated list of numbers')
    checks.positive(flag, number)
    out.append(number)
  return out


def _ints(flag: str, values) -> list[int]:
  out = []
  for value in values:
    if not value.isdigit():
      checks.fail(flag, ','.join(values), 'a comma-separated list of integers >= 1')
    checks.at_least(flag, int(value), 1)
    out.append(int(value))
  return out


def _g(value: float) -> str:
  return f'{value:g}'


def _epsilon_of(privacy: dict) -> float:
  value = privacy.get('epsilon', 'inf')
  return math.inf if value == 'inf' else float(value)


class Study:
  """One job's cells under OUTPUT_DIR/<job>: run or read each, keep the rows."""

  def __init__(self, job: str):
    self.job = job
    self.root = os.path.join(_OUTPUT_DIR.value, job)
    self.rows = []
    self.global_mean_rmse = None   # the test RMSE of predicting the training mean (rec jobs)

  def cell(self, study: str, name: str, measure) -> dict | None:
    """The cell's row: read from cell.json, or measured (`measure(path)`) and stored."""
    for row in self.rows:
      if row['cell'] == name:
        # A sweep's cell that is also on the curve (the sweep's best, at its
        # epsilon) is one run and one row, drawn with the curve.
        row['study'] = study
        return row
    path = os.path.join(self.root, name)
    done = run_dir.RunDir(path)
    if done.exists(CELL):
      row = done.read_json(CELL)
    elif _REPORT_ONLY.value:
      return None
    else:
      print(f'== {self.job}/{name}: training', flush=True)
      started = time.perf_counter()
      row = measure(path)
      row.update(job=self.job, study=study, cell=name,
                 seconds=round(time.perf_counter() - started, 1))
      done.write_json(CELL, row)
    print(f'   {self.job}/{name}: ' + ', '.join(
        f'{k}={row[k]}' for k in ('epsilon', 'noise_multiplier', 'pooled_auc', 'test_rmse',
                                  'hr@10', 'seconds') if row.get(k) is not None), flush=True)
    self.rows.append(row)
    return row


# ---------------------------------------------------------------------------
# Credit.


def _credit_measure(fed, *, algorithm_fields: dict, train_fields: dict):
  import numpy as np

  from tff_credit import config
  from tff_credit import metrics
  from tff_credit import model
  from tff_credit import training

  def measure(path):
    algorithm = config.AlgorithmConfig(**algorithm_fields)
    train = config.TrainConfig(rounds=_CREDIT_ROUNDS.value, **train_fields)
    training.train(data=fed.config, algorithm=algorithm, train_config=train, output_dir=path,
                   log=lambda line: None)
    weights, metadata = model.load_with_metadata(run_dir.RunDir(path))
    scores = {name: model.predict(model=train.model, weights=weights, features=fed.test[name][0])
              for name in fed.bank_names}
    labels = [fed.test[name][1] for name in fed.bank_names]
    pooled = metrics.auc(np.concatenate(labels), np.concatenate([scores[n] for n in fed.bank_names]))
    privacy = metadata.get('privacy', {})
    per_bank = metadata.get('privacy_per_bank') or {}
    return {
        'level': 'none' if privacy.get('differential_privacy', 'none') == 'none'
                 else privacy['differential_privacy'],
        'epsilon': _epsilon_of(privacy), 'delta': privacy.get('delta'),
        'noise_multiplier': privacy.get('noise_multiplier', 0.0),
        'sampling': privacy.get('sampling'), 'population': privacy.get('population'),
        'clients_per_round': len(fed.bank_names), 'rounds': train.rounds,
        'dp_clip': algorithm.dp_clip if algorithm.dp_enabled else None,
        'client_lr': algorithm.client_lr, 'server_lr': algorithm.server_lr,
        'local_epochs': train.local_epochs, 'batch_size': train.batch_size,
        'pooled_auc': round(float(pooled), 4),
        'bank_auc': {n: round(float(metrics.auc(fed.test[n][1], scores[n])), 4)
                     for n in fed.bank_names},
        'bank_epsilon': {n: round(float(e), 4) for n, e in per_bank.items()},
    }

  return measure


def run_credit() -> Study:
  from tff_credit import config
  from tff_credit import federation

  study = Study('credit')
  fed = None if _REPORT_ONLY.value else federation.build_federation(config.DataConfig())

  def cell(kind, name, algorithm_fields, train_fields=None):
    measure = (None if fed is None else
               _credit_measure(fed, algorithm_fields=algorithm_fields,
                               train_fields=train_fields or {}))
    return study.cell(kind, name, measure)

  baseline = cell('baseline', 'nonprivate', {})
  record = dict(dp_level='record', dp_delta=CREDIT_DELTA)
  # The sweep: one epsilon, every combination; the curve takes the best AUC.
  tuned = []
  grid = itertools.product(
      _floats('credit_tune_dp_clip', _CREDIT_TUNE_CLIP.value),
      _floats('credit_tune_client_lr', _CREDIT_TUNE_LR.value),
      _ints('credit_tune_local_epochs', _CREDIT_TUNE_EPOCHS.value),
      _ints('credit_tune_batch_size', _CREDIT_TUNE_BATCH.value))
  for clip, lr, epochs, batch in grid:
    setting = dict(dp_clip=clip, client_lr=lr, local_epochs=epochs, batch_size=batch)
    row = cell('tune', _credit_setting_name(_CREDIT_TUNE_EPSILON.value, setting),
               {**record, 'target_epsilon': _CREDIT_TUNE_EPSILON.value, 'dp_clip': clip,
                'client_lr': lr}, {'local_epochs': epochs, 'batch_size': batch})
    if row:
      tuned.append((row['pooled_auc'], setting))
  if not tuned:
    return study
  best = max(tuned, key=lambda t: t[0])[1]
  print(f'   credit: record-level curve with {best} (best pooled AUC of the sweep)', flush=True)
  for epsilon in _floats('credit_epsilons', _CREDIT_EPSILONS.value):
    cell('record', _credit_setting_name(epsilon, best),
         {**record, 'target_epsilon': epsilon, 'dp_clip': best['dp_clip'],
          'client_lr': best['client_lr']},
         {'local_epochs': best['local_epochs'], 'batch_size': best['batch_size']})
  for z in _floats('credit_bank_noise', _CREDIT_BANK_NOISE.value):
    cell('bank', f'bank_z{_g(z)}_clip{_g(_CREDIT_BANK_CLIP.value)}',
         dict(dp_level='bank', dp_delta=CREDIT_DELTA, dp_noise_multiplier=z,
              dp_clip=_CREDIT_BANK_CLIP.value))
  del baseline
  return study


def _credit_setting_name(epsilon, s) -> str:
  return (f'record_eps{_g(epsilon)}_clip{_g(s["dp_clip"])}_lr{_g(s["client_lr"])}'
          f'_e{s["local_epochs"]}_b{s["batch_size"]}')


# ---------------------------------------------------------------------------
# Recommendation (bundled and synthetic).


def _rec_measure(data_config, split, train_fields: dict, overrides: dict):
  from tff_rec import config
  from tff_rec import evaluation
  from tff_rec import training

  def measure(path):
    train = config.TrainConfig(**train_fields)

    def log(line):
      if 'round' in line and '/' in line:
        done = line.split('round', 1)[1].split('/', 1)[0].strip()
        if done.isdigit() and int(done) % 10 and int(done) != train.rounds:
          return  # every tenth round is enough
      print(f'     {line}', flush=True)

    params = training.train(data_config=data_config, train_config=train, output_dir=path,
                            split=split, log=log)
    metadata = run_dir.RunDir(path).child(train.algorithm).load_model()[1]
    users = evaluation.training_user_factors(params, split, train.recon())
    metrics = evaluation.mf_metrics(params, users, split.train, split.test, seed=data_config.seed)
    privacy = metadata.get('privacy', {})
    return {
        'level': 'none' if privacy.get('differential_privacy', 'none') == 'none'
                 else privacy['differential_privacy'],
        'epsilon': _epsilon_of(privacy), 'delta': privacy.get('delta'),
        'noise_multiplier': privacy.get('noise_multiplier', 0.0),
        'sampling': privacy.get('sampling', train.client_sampling),
        'population': len(split.train), 'clients_per_round': train.clients_per_round,
        'rounds': train.rounds, 'dp_clip': train.dp_clip if train.dp_enabled else None,
        'client_lr': train.client_lr, 'server_lr': train.effective_server_lr(),
        'dim': train.dim, 'implicit_weight': train.loss_weight(),
        'adaptive_quantile': train.dp_adaptive_quantile if train.dp_enabled else None,
        'last_clip': _last_clip(run_dir.RunDir(path).child(train.algorithm)),
        'test_rmse': round(metrics['rmse'], 4), 'hr@10': round(metrics['hr@10'], 4),
        **overrides,
    }

  return measure


def _last_clip(run) -> float | None:
  """The adaptive clip of a run's last round (metrics.csv), None if it has none."""
  path = run.metrics_csv
  if not os.path.exists(path):
    return None
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  names = [k for k in (rows[0] if rows else {}) if k.endswith('/clip')]
  if not names or not rows[-1].get(names[0]):
    return None
  return round(float(rows[-1][names[0]]), 4)


def _global_mean_rmse(split) -> float:
  import numpy as np
  errors = split.test.ratings - split.global_mean()
  return round(float(np.sqrt(np.mean(errors ** 2))), 4)


def _rec_cell(study, kind, name, data_config, split, fields, overrides=None):
  measure = None if split is None else _rec_measure(data_config, split, fields, overrides or {})
  return study.cell(kind, name, measure)


def _rec_setting_name(s: dict) -> str:
  """A DP setting's part of a cell name; model settings at tff_rec's defaults
  are left out (so cells named before they were swept keep their names)."""
  from tff_rec import config
  default = config.TrainConfig()
  name = f'lr{_g(s["server_lr"])}_clip{_g(s["dp_clip"])}'
  if s.get('dp_adaptive_quantile') is not None:
    name += f'_q{_g(s["dp_adaptive_quantile"])}'
  return name + _rec_model_name(s, default)


def _rec_model_name(s: dict, default) -> str:
  name = ''
  if s.get('dim', default.dim) != default.dim:
    name += f'_d{s["dim"]}'
  if s.get('implicit_weight', default.implicit_weight) != default.implicit_weight:
    name += f'_w{_g(s["implicit_weight"])}'
  return name


def _rec_model_fields(s: dict) -> dict:
  """The model flags of a setting (implicit weight 0: no implicit head)."""
  fields = {k: s[k] for k in ('dim', 'implicit_weight') if k in s}
  if fields.get('implicit_weight') == 0:
    fields['negatives_per_rating'] = 0.0
  return fields


def _weights(flag: str, values) -> list[float]:
  """Numbers >= 0 (0 allowed: no implicit head)."""
  out = []
  for value in values:
    try:
      number = float(value)
    except ValueError:
      checks.fail(flag, ','.join(values), 'a comma-separated list of numbers >= 0')
    checks.non_negative(flag, number)
    out.append(number)
  return out


def _quantiles(flag: str, values) -> list:
  out = []
  for value in values:
    if value == 'none':
      out.append(None)
      continue
    number = _floats(flag, [value])[0]
    if not number < 1:
      checks.fail(flag, ','.join(values), "a comma-separated list of 'none' or numbers in (0, 1)")
    out.append(number)
  return out


def run_rec() -> Study:
  """The bundled-data study."""
  from tff_rec import config
  from tff_rec import split as split_lib

  study = Study('rec')
  data_config = config.DataConfig()
  # Loaded also to report only: the global mean's RMSE puts the others in scale.
  split = split_lib.load_and_split(data_config, log=lambda line: None)
  study.global_mean_rmse = _global_mean_rmse(split)
  clients = _REC_CLIENTS.value
  checks.at_least('rec_clients_per_round', clients, 1)
  checks.at_least('rec_rounds', _REC_ROUNDS.value, 1)
  checks.at_least('rec_tune_rounds', _REC_TUNE_ROUNDS.value, 1)
  for part in _REC_PARTS.value:
    checks.one_of('rec_parts', part, REC_PARTS)
  parts = set(_REC_PARTS.value)
  # Every list is checked before anything trains.
  grid = list(itertools.product(
      _floats('rec_tune_server_lr', _REC_TUNE_SERVER_LR.value),
      _floats('rec_tune_dp_clip', _REC_TUNE_CLIP.value),
      _quantiles('rec_tune_adaptive_quantile', _REC_TUNE_QUANTILE.value),
      _ints('rec_tune_dim', _REC_TUNE_DIM.value),
      _weights('rec_tune_implicit_weight', _REC_TUNE_IMPLICIT.value)))
  epsilons = _floats('rec_epsilons', _REC_EPSILONS.value)
  poisson = dict(clients_per_round=clients, client_sampling='poisson')
  default = config.TrainConfig()
  if 'baseline' in parts:
    _rec_cell(study, 'baseline', f'nonprivate_r{_REC_ROUNDS.value}', data_config, split,
              dict(rounds=_REC_ROUNDS.value, **poisson))
  if _REC_TUNE_ROUNDS.value != _REC_ROUNDS.value and 'tune' in parts:
    # The sweep's own reference: non-private at the sweep's rounds.
    _rec_cell(study, 'tune', f'nonprivate_r{_REC_TUNE_ROUNDS.value}', data_config, split,
              dict(rounds=_REC_TUNE_ROUNDS.value, **poisson))
  tuned = []
  for lr, clip, quantile, dim, implicit_weight in grid:
    setting = dict(server_lr=lr, dp_clip=clip, dp_adaptive_quantile=quantile, dim=dim,
                   implicit_weight=implicit_weight)
    name = f'eps{_g(_REC_TUNE_EPSILON.value)}_{_rec_setting_name(setting)}_r{_REC_TUNE_ROUNDS.value}'
    if 'tune' not in parts and not run_dir.RunDir(os.path.join(study.root, name)).exists(CELL):
      continue
    row = _rec_cell(study, 'tune', name, data_config, split,
                    dict(rounds=_REC_TUNE_ROUNDS.value, target_epsilon=_REC_TUNE_EPSILON.value,
                         server_lr=lr, dp_clip=clip, dp_adaptive_quantile=quantile,
                         **_rec_model_fields(setting), **poisson))
    if row:
      tuned.append((row['test_rmse'], setting))
  if not tuned or 'curve' not in parts:
    return study
  _, best = min(tuned, key=lambda t: t[0])
  print(f'   rec: DP curve with {best} (best test RMSE of the sweep)', flush=True)
  for epsilon in epsilons:
    _rec_cell(study, 'dp', f'eps{_g(epsilon)}_{_rec_setting_name(best)}_r{_REC_ROUNDS.value}',
              data_config, split,
              dict(rounds=_REC_ROUNDS.value, target_epsilon=epsilon, server_lr=best['server_lr'],
                   dp_clip=best['dp_clip'], dp_adaptive_quantile=best['dp_adaptive_quantile'],
                   **_rec_model_fields(best), **poisson))
  model_name = _rec_model_name(best, default)
  if model_name:
    # The tuned model without DP: the curve's own epsilon = inf point (after
    # the DP points: the default model's baseline is the goal's reference).
    _rec_cell(study, 'baseline', f'nonprivate{model_name}_r{_REC_ROUNDS.value}', data_config,
              split, dict(rounds=_REC_ROUNDS.value, **_rec_model_fields(best), **poisson))
  return study


def _population_measure(population, train_fields: dict, overrides: dict):
  """Trains FedRecon on a lazy synthetic population (Poisson sampling, no
  checkpoints: a cell is the unit that resumes) and scores it on
  `--synthetic_eval_users` of its users' test ratings."""
  import numpy as np

  from tff_common import privacy
  from tff_rec import algorithms
  from tff_rec import clients
  from tff_rec import config
  from tff_rec import evaluation
  from tff_rec import params as params_lib

  def measure(path):
    del path
    train = config.TrainConfig(**train_fields)
    train.check()
    z = train.dp_noise_multiplier
    process, layers = algorithms.build_process(population, train, noise_multiplier=z)
    data_fn = clients.training_data_fn(
        population.train, batch_size=train.examples_per_batch(), seed=train.seed,
        num_items=population.num_items, negatives_per_rating=train.negatives())
    n = len(population)
    q = train.clients_per_round / n
    state = process.initialize()
    sampled = []
    for round_num in range(1, train.rounds + 1):
      rng = np.random.default_rng([train.seed, round_num])
      ids = [str(k + 1) for k in np.flatnonzero(rng.random(n) < q)]
      sampled.append(len(ids))
      if ids:  # q x N >= 30 here: an empty round has probability < 1e-13
        state = process.next(state, data_fn(ids, round_num)).state
      if round_num % 10 == 0:
        print(f'     round {round_num}/{train.rounds}', flush=True)
    params = params_lib.from_weights(algorithms.trainable_weights(process, state), layers,
                                     l2=train.l2, implicit_l2=train.implicit_l2)
    held = population.sample(_SYN_EVAL_USERS.value)
    users = evaluation.training_user_factors(params, held, train.recon())
    metrics = evaluation.mf_metrics(params, users, held.train, held.test, seed=train.seed)
    mean_rmse = float(np.sqrt(np.mean((held.test.ratings - population.global_mean()) ** 2)))
    row = {
        'level': 'none', 'epsilon': math.inf, 'noise_multiplier': 0.0, 'sampling': 'poisson',
        'population': n, 'clients_per_round': train.clients_per_round, 'rounds': train.rounds,
        'dp_clip': None, 'client_lr': train.client_lr, 'server_lr': train.effective_server_lr(),
        'dim': train.dim, 'implicit_weight': train.loss_weight(),
        'adaptive_quantile': train.dp_adaptive_quantile if train.dp_enabled else None,
        'run_population': n, 'run_clients_per_round': train.clients_per_round,
        'mean_sampled': round(float(np.mean(sampled)), 1),
        'test_rmse': round(metrics['rmse'], 4), 'hr@10': round(metrics['hr@10'], 4),
        'global_mean_rmse': round(mean_rmse, 4),
    }
    if train.dp_enabled:
      row.update(level='user-level', dp_clip=train.dp_clip, run_noise_multiplier=z,
                 delta=privacy.default_delta(n))
    row.update(overrides)
    return row

  return measure


def run_synthetic() -> Study:
  """DP-FedRecon on lazy synthetic populations of `--synthetic_populations`
  users, q x N of them a round (see the module docstring)."""
  from tff_common import privacy
  from tff_rec import synthetic

  study = Study('synthetic')
  rounds, rate, run_clients = _SYN_ROUNDS.value, _SYN_RATE.value, _SYN_RUN_CLIENTS.value
  checks.at_least('synthetic_rounds', rounds, 1)
  checks.in_range('synthetic_sampling_rate', rate, 0, 1, low_open=True)
  checks.at_least('synthetic_run_clients', run_clients, 1)
  checks.at_least('synthetic_items', _SYN_ITEMS.value, 100)  # users rate up to 100 items
  checks.at_least('synthetic_eval_users', _SYN_EVAL_USERS.value, 1)
  for flag in ('synthetic_server_lr', 'synthetic_dp_clip'):
    checks.positive(flag, flags.FLAGS[flag].value)
  for part in _SYN_PARTS.value:
    checks.one_of('synthetic_parts', part, SYN_PARTS)
  populations = _ints('synthetic_populations', _SYN_POPULATIONS.value)

  def cell(kind, name, measure):
    if kind not in _SYN_PARTS.value and not run_dir.RunDir(
        os.path.join(study.root, name)).exists(CELL):
      return None
    return study.cell(kind, name, measure)

  epsilons = _floats('synthetic_epsilons', _SYN_EPSILONS.value)
  model = dict(dim=_SYN_DIM.value, implicit_weight=_SYN_IMPLICIT.value)
  if _SYN_IMPLICIT.value == 0:
    model['negatives_per_rating'] = 0.0
  model_name = f'd{_SYN_DIM.value}_w{_g(_SYN_IMPLICIT.value)}'
  dp_name = (f'lr{_g(_SYN_SERVER_LR.value)}_clip{_g(_SYN_CLIP.value)}' +
             ('' if _SYN_QUANTILE.value is None else f'_q{_g(_SYN_QUANTILE.value)}'))
  for population_size in populations:
    deployed = max(1, int(round(rate * population_size)))
    run = min(deployed, run_clients)
    checks.at_least('synthetic_populations', population_size, 2)
    population = (None if _REPORT_ONLY.value else
                  synthetic.SyntheticPopulation(population_size, num_items=_SYN_ITEMS.value))
    if population is not None and study.global_mean_rmse is None:
      held = population.sample(_SYN_EVAL_USERS.value)
      import numpy as np
      study.global_mean_rmse = round(float(np.sqrt(np.mean(
          (held.test.ratings - population.global_mean()) ** 2))), 4)
    prefix = f'N{population_size}_m{deployed}_r{rounds}_{model_name}'
    common = dict(rounds=rounds, clients_per_round=run, client_sampling='poisson', **model)
    for epsilon in epsilons:
      delta = privacy.default_delta(population_size)
      z = privacy.calibrate_noise_multiplier(epsilon, sampling='poisson', sample_size=deployed,
                                             population=population_size, steps=rounds,
                                             delta=delta)
      reached = privacy.epsilon(privacy.Mechanism(z, 'poisson', deployed, population_size,
                                                  rounds, delta))
      # The deployment's noise on the averaged update: z x clip / deployed.
      z_run = z * run / deployed
      overrides = {'epsilon': reached, 'delta': delta, 'noise_multiplier': z,
                   'clients_per_round': deployed, 'run_noise_multiplier': z_run,
                   'run_clients_per_round': run}
      fields = dict(server_lr=_SYN_SERVER_LR.value, dp_clip=_SYN_CLIP.value,
                    dp_noise_multiplier=z_run, dp_adaptive_quantile=_SYN_QUANTILE.value,
                    **common)
      measure = (None if population is None else
                 _population_measure(population, fields, overrides))
      cell('dp', f'{prefix}_eps{_g(epsilon)}_{dp_name}', measure)
    measure = None if population is None else _population_measure(
        population, dict(common, server_lr=_SYN_BASELINE_LR.value),
        {'clients_per_round': deployed, 'run_clients_per_round': run})
    cell('baseline', f'{prefix}_nonprivate_lr{_g(_SYN_BASELINE_LR.value)}', measure)
  if study.global_mean_rmse is None:  # report only: the cells carry it
    study.global_mean_rmse = next((r['global_mean_rmse'] for r in study.rows
                                   if r.get('global_mean_rmse') is not None), None)
  return study


# ---------------------------------------------------------------------------
# Outputs.


def _best_baseline(rows, **match):
  """The lowest-RMSE non-private row among `rows` matching `match`."""
  candidates = [r for r in rows if r['study'] == 'baseline'
                and all(r.get(k) == v for k, v in match.items())]
  return min(candidates, key=lambda r: r['test_rmse']) if candidates else None


def _synthetic_reference(rows, row):
  """The non-private run a synthetic DP row is compared with: same population,
  users trained on per round and rounds (else the nearest population's)."""
  candidates = [r for r in rows if r['study'] == 'baseline' and r['rounds'] == row['rounds']
                and r.get('run_clients_per_round') == row.get('run_clients_per_round')
                and math.isfinite(r['test_rmse'])]  # a diverged run is no reference
  if not candidates:
    return None
  return min(candidates, key=lambda r: (abs(math.log(r['population'] / row['population'])),
                                        r['test_rmse']))


def _annotate(rows):
  """Adds each DP row's cost over its non-private reference."""
  by_job = {}
  for row in rows:
    by_job.setdefault(row['job'], []).append(row)
  for row in by_job.get('credit', []):
    if row['level'] == 'bank-level' and not row.get('bank_epsilon'):
      # One guarantee for every bank: each is one participant of the DP mean.
      row['bank_epsilon'] = {name: round(row['epsilon'], 4) for name in row['bank_auc']}
    base = next((r for r in by_job['credit'] if r['study'] == 'baseline'), None)
    if base:
      row['auc_cost'] = round(base['pooled_auc'] - row['pooled_auc'], 4)
  for job in ('rec', 'synthetic'):
    for row in by_job.get(job, []):
      if job == 'rec':
        base = next((r for r in by_job[job] if r['study'] in ('baseline', 'tune')
                     and r['level'] == 'none' and r['rounds'] == row['rounds']), None)
      else:
        base = _synthetic_reference(by_job[job], row)
      if base:
        row['rmse_cost'] = round(row['test_rmse'] - base['test_rmse'], 4)


def _cell_text(value) -> str:
  if value is None:
    return ''
  if isinstance(value, float):
    return '∞' if math.isinf(value) else f'{value:.4g}'
  if isinstance(value, dict):
    return '; '.join(f'{k} {_cell_text(v)}' for k, v in value.items())
  return str(value)


def _table(rows, columns) -> list[str]:
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  for row in rows:
    lines.append('| ' + ' | '.join(_cell_text(row.get(c)) for c in columns) + ' |')
  return lines + ['']


def _markdown(rows, global_mean_rmse: dict) -> str:
  out = ['# Privacy-utility study (issue 12)', '',
         'Written by `bench/privacy_utility.py`; one row per run (cell). Costs are against '
         'the non-private run of the same rounds (synthetic: of the same population, clients '
         'per round and rounds, at its best server lr).', '']
  credit = [r for r in rows if r['job'] == 'credit']
  if credit:
    out += ['## Credit: pooled test AUC against ε (δ = 1e-5)', '']
    out += _table(credit, ('study', 'level', 'epsilon', 'noise_multiplier', 'dp_clip',
                           'client_lr', 'local_epochs', 'batch_size', 'pooled_auc', 'auc_cost',
                           'seconds'))
    out += ['Every bank\'s test AUC and ε (customer-level: the bank\'s DP-SGD; bank-level: '
            'one ε for all banks):', '']
    out += _table(credit, ('cell', 'bank_auc', 'bank_epsilon'))
    met = [r for r in credit if r['level'] != 'none' and r['epsilon'] <= CREDIT_GOAL['epsilon']
           and r.get('auc_cost') is not None and r['auc_cost'] <= CREDIT_GOAL['auc_cost']]
    out += [f"Goal (customer-level ε ≤ {CREDIT_GOAL['epsilon']:g} at ≤ "
            f"{CREDIT_GOAL['auc_cost']:g} pooled AUC cost): " +
            (f"met by {len(met)} run(s); best: {max(met, key=lambda r: r['pooled_auc'])['cell']}"
             if met else 'not met by any run'), '']
  for job, title in (('rec', 'Recommendation, bundled MovieLens'),
                     ('synthetic', 'Recommendation, synthetic population')):
    part = [r for r in rows if r['job'] == job]
    if not part:
      continue
    out += [f'## {title}: test RMSE and HR@10 against ε', '']
    if global_mean_rmse.get(job) is not None:
      out += [f'Predicting every rating by the training mean: test RMSE '
              f'{global_mean_rmse[job]:.4f} (a model near it has learned little).', '']
    columns = ['study', 'cell', 'population', 'clients_per_round', 'rounds', 'epsilon', 'delta',
               'noise_multiplier', 'dp_clip', 'adaptive_quantile', 'last_clip', 'dim',
               'implicit_weight', 'server_lr', 'test_rmse', 'rmse_cost', 'hr@10', 'seconds']
    if job == 'synthetic':
      out += ['Each row is a deployment of `population` users with `clients_per_round` '
              '(expected, Poisson) a round: its ε, δ and z. Rows whose run_clients_per_round '
              'is smaller are noise-equivalent: trained on that many users a round of the same '
              'population, with z scaled to give the deployment\'s noise on the averaged '
              'update (run_noise_multiplier = z x run clients / deployment clients; fewer '
              'users a round also means a noisier average of their updates, so these '
              'understate the deployment\'s utility, if anything). Costs are against the '
              'non-private run of the same population, run users per round and rounds.', '']
      columns[-1:-1] = ['run_clients_per_round', 'run_noise_multiplier']
    out += _table(part, columns)
    met = [r for r in part if r['level'] != 'none' and r['study'] != 'tune'
           and r['epsilon'] <= REC_GOAL['epsilon'] and r.get('rmse_cost') is not None
           and r['rmse_cost'] <= REC_GOAL['rmse_cost']]
    # A cost is only meaningful against a reference that learned more than the
    # margin: otherwise a model that learned nothing "meets" the goal.
    floor = global_mean_rmse.get(job)
    vacuous = [r for r in met if floor is not None
               and floor - (r['test_rmse'] - r['rmse_cost']) < REC_GOAL['rmse_cost']]
    met = [r for r in met if r not in vacuous]
    goal = f"Goal (ε ≤ {REC_GOAL['epsilon']:g} at ≤ {REC_GOAL['rmse_cost']:g} RMSE cost): "
    if met:
      smallest = min(met, key=lambda r: (r['population'], r['clients_per_round']))
      goal += (f"met; smallest population {smallest['population']} training users "
               f"({smallest['clients_per_round']} per round, cell {smallest['cell']})")
    else:
      goal += 'not met by any run'
    if vacuous:
      goal += (f'; not established by {len(vacuous)} run(s) within the margin of a reference '
               f'that is itself within {REC_GOAL["rmse_cost"]:g} of the global mean '
               f'({", ".join(r["cell"] for r in vacuous)})')
    out += [goal, '']
  return '\n'.join(out)


def _plot(rows, path_of):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  def x_of(epsilons, finite_max):
    # ε = ∞ is drawn one decade right of the largest finite ε.
    return [e if math.isfinite(e) else finite_max * 10 for e in epsilons]

  credit = [r for r in rows if r['job'] == 'credit']
  if credit:
    finite = [r['epsilon'] for r in credit if math.isfinite(r['epsilon'])] or [1.0]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    base = next((r for r in credit if r['study'] == 'baseline'), None)
    for study, label, marker in (('record', 'customer-level (DP-SGD in banks)', 'o'),
                                 ('bank', 'bank-level (DP mean over banks)', 's'),
                                 ('tune', 'customer-level sweep', 'x')):
      part = sorted((r for r in credit if r['study'] == study), key=lambda r: r['epsilon'])
      if part:
        axis.plot(x_of([r['epsilon'] for r in part], max(finite)),
                  [r['pooled_auc'] for r in part], marker=marker,
                  linestyle='-' if study != 'tune' else 'none', label=label)
    if base:
      axis.axhline(base['pooled_auc'], color='gray', linestyle='--', label='non-private FedAvg')
      axis.axhline(base['pooled_auc'] - CREDIT_GOAL['auc_cost'], color='gray', linestyle=':',
                   label=f"non-private − {CREDIT_GOAL['auc_cost']:g}")
    axis.axvline(CREDIT_GOAL['epsilon'], color='red', alpha=0.3, label='ε goal')
    axis.set_xscale('log')
    axis.set(xlabel='ε (δ = 1e-5, log scale)', ylabel='pooled test AUC',
             title='credit: privacy against pooled AUC')
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    files.save_figure(figure, path_of('credit'), dpi=110)
    plt.close(figure)

  rec = [r for r in rows if r['job'] in ('rec', 'synthetic') and r['study'] in ('dp', 'baseline')]
  if rec:
    finite = [r['epsilon'] for r in rec if math.isfinite(r['epsilon'])] or [1.0]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    series = {}
    for row in rec:
      if row['study'] == 'dp' or row['job'] == 'rec':
        key = ('bundled' if row['job'] == 'rec' else 'synthetic',
               row['population'], row['clients_per_round'])
        series.setdefault(key, []).append(row)
    # A synthetic deployment's ε = ∞ point is its runs' non-private baseline.
    for (kind, _, _), part in series.items():
      if kind == 'synthetic':
        base = _synthetic_reference([r for r in rec if r['job'] == 'synthetic'], part[0])
        if base:
          part.append(base)
    for (kind, population, clients), part in sorted(series.items()):
      # One point per ε: a baseline or sweep with several server lrs shows its best.
      best = {}
      for row in part:
        if row['epsilon'] not in best or row['test_rmse'] < best[row['epsilon']]['test_rmse']:
          best[row['epsilon']] = row
      points = [best[e] for e in sorted(best)]
      label = f'{kind}: {population} users, {clients}/round'
      for axis, metric in zip(axes, ('test_rmse', 'hr@10')):
        axis.plot(x_of([r['epsilon'] for r in points], max(finite)),
                  [r[metric] for r in points], marker='o', label=label)
    for axis, metric in zip(axes, ('test RMSE', 'HR@10')):
      axis.axvline(REC_GOAL['epsilon'], color='red', alpha=0.3)
      axis.set_xscale('log')
      axis.set(xlabel='ε (log scale; the rightmost point of a line is ε = ∞)', ylabel=metric)
      axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle('recommendation: user-level privacy against RMSE and HR@10')
    figure.tight_layout()
    files.save_figure(figure, path_of('rec'), dpi=110)
    plt.close(figure)


def write_outputs(rows, global_mean_rmse: dict):
  _annotate(rows)
  out = _OUTPUT_DIR.value
  path = os.path.join(out, 'privacy_utility.csv')
  with files.atomic_path(path) as tmp, open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction='ignore')
    writer.writeheader()
    for row in rows:
      writer.writerow({k: (json.dumps(v) if isinstance(v, dict) else v)
                       for k, v in row.items()})
  text = _markdown(rows, global_mean_rmse)
  files.write_text(os.path.join(out, 'privacy_utility.md'), text)
  _plot(rows, lambda job: os.path.join(out, f'privacy_utility_{job}.png'))
  print(text)
  print(f'wrote {path}, privacy_utility.md and privacy_utility_*.png')


def main(argv):
  del argv
  for job in _JOBS.value:
    checks.one_of('jobs', job, JOBS)
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  studies = []
  # The outputs cover every study with finished cells, run now or before.
  for job in JOBS:
    if job not in _JOBS.value and not os.path.isdir(os.path.join(_OUTPUT_DIR.value, job)):
      continue
    chosen = job in _JOBS.value
    saved = _REPORT_ONLY.value
    flags.FLAGS.report_only = saved or not chosen  # other studies: read their cells only
    try:
      if job == 'credit':
        studies.append(run_credit())
      elif job == 'rec':
        studies.append(run_rec())
      else:
        studies.append(run_synthetic())
    finally:
      flags.FLAGS.report_only = saved
  rows = [row for study in studies for row in study.rows]
  if not rows:
    print('no finished cell yet')
    return
  write_outputs(rows, {study.job: study.global_mean_rmse for study in studies})


if __name__ == '__main__':
  cli.run(main)

"""The comparison of fedrecon, fedavg, centralized and popularity (Python, after training).

Evaluates every model found in an output directory on the same split, then
writes `summary.json`, `report.md` and `curves.png` atomically. With device-side
personalization (`personalization.PersonalizeConfig`), each method adds a model
'fedrecon+<method>': FedRecon's released parameters, personalized on every
device (training and held-out users), in the same tables and summary shape.
"""

import time

import numpy as np

from tff_common import communication
from tff_common import progress
from tff_common import run_dir as run_dir_lib
from tff_rec import algorithms
from tff_rec import centralized
from tff_rec import config as config_lib
from tff_rec import evaluation
from tff_rec import params as params_lib
from tff_rec import personalization
from tff_rec import reconstruction
from tff_rec import split as split_lib

# The systems compared.
COMPARED = ('fedrecon', 'fedavg', 'centralized', 'popularity')
COLUMNS = ('rmse', 'mae', 'hr@10', 'ndcg@10', 'recall@20')


PERSONALIZED = 'fedrecon+{}'


def compared(results: dict) -> list[str]:
  """The models of `results` in report order: each personalized FedRecon after FedRecon."""
  names = []
  for name in COMPARED:
    names.append(name)
    if name == 'fedrecon':
      names += [PERSONALIZED.format(m) for m in personalization.METHODS]
  return [name for name in names if name in results]


def evaluate_all(output_dir: str, *, split: split_lib.Split | None = None,
                 personalize: personalization.PersonalizeConfig = personalization.DEFAULT,
                 log=progress.print_flushed) -> dict:
  """Metrics of every model trained in `output_dir`, for training and held-out users
  (and of FedRecon personalized on the devices by each method of `personalize`)."""
  personalize.check()
  root = run_dir_lib.RunDir(output_dir)
  data_config = config_lib.read_data_config(root)
  if split is None:
    split = split_lib.load_and_split(data_config, log=log)
  config_lib.check_data(root, split)
  seed = data_config.seed
  results = {}
  for algorithm in config_lib.ALGORITHMS:
    run = root.child(algorithm)
    if not run.exists(run_dir_lib.MODEL):
      log(f'{algorithm}: no model in {run.path}; run tff_rec.train --algorithm={algorithm}')
      continue
    started = time.perf_counter()
    arrays, metadata = run.load_model()
    params = params_lib.from_arrays(arrays)
    config = config_lib.read_train_config(root, algorithm)
    results[algorithm] = _evaluate_mf(algorithm, params, split, config, seed=seed)
    results[algorithm]['train_seconds'] = metadata.get('seconds')
    results[algorithm]['rounds'] = metadata.get('rounds')
    if algorithm in config_lib.FEDERATED:
      # What the run cost on the network (metrics.csv, every round run).
      for key in (communication.BYTES_UP, communication.BYTES_DOWN):
        results[algorithm][key] = run.total(key, metadata.get('rounds') or 0)
    results[algorithm]['implicit'] = params.implicit
    # Models trained before privacy was recorded had none.
    results[algorithm]['privacy'] = metadata.get('privacy', {'differential_privacy': 'none'})
    results[algorithm]['privacy_text'] = metadata.get('privacy_text', 'no differential privacy')
    log(f'{algorithm}: evaluated in {time.perf_counter() - started:.0f} s')
    if algorithm == 'fedrecon':
      for method in personalize.personalize:
        started = time.perf_counter()
        results[PERSONALIZED.format(method)] = _evaluate_personalized(
            method, params, split, config, personalize, seed=seed)
        log(f'fedrecon+{method}: personalized on every device and evaluated in '
            f'{time.perf_counter() - started:.0f} s')
  scores = centralized.popularity(split)
  results['popularity'] = {
      'users': evaluation.popularity_metrics(scores, split.train, split.test, seed=seed),
      'heldout': evaluation.popularity_metrics(scores, split.heldout_train,
                                               split.heldout_test, seed=seed)}
  errors = split.test.ratings - split.global_mean()
  results['global_mean_rmse'] = float(np.sqrt(np.mean(errors ** 2)))
  results['split'] = {
      'training_users': len(split.train), 'heldout_users': len(split.heldout_train),
      'train_ratings': split.train.num_ratings, 'test_ratings': split.test.num_ratings,
      'items': split.num_items, 'unknown_items_skipped': split.unknown_items}
  return results


def _evaluate_mf(algorithm, params, split, config, *, seed):
  recon = config.recon()
  factors = evaluation.training_user_factors(params, split, recon)
  users = evaluation.mf_metrics(params, factors, split.train, split.test, seed=seed)
  # New users are reconstructed on device under every model (fold-in).
  heldout_factors = reconstruction.reconstruct_part(params, split.heldout_train, recon)
  heldout = evaluation.mf_metrics(params, heldout_factors, split.heldout_train,
                                  split.heldout_test, seed=seed)
  if params.implicit:
    users['rated_loss'] = evaluation.rated_loss(params, factors, split.test)
    heldout['rated_loss'] = evaluation.rated_loss(params, heldout_factors, split.heldout_test)
  if algorithm == 'fedrecon':
    # The federated evaluation is the reported figure; the NumPy one above
    # must agree with it (same reconstruction), and is kept as a check.
    eval_process = algorithms.build_eval_process(split, config)
    weights = params_lib.global_weights(params)
    for result, train, test in ((users, split.train, split.test),
                                (heldout, split.heldout_train, split.heldout_test)):
      federated = evaluation.federated_rating_metrics(
          eval_process=eval_process, weights=weights, train=train, test=test,
          recon=recon, num_items=split.num_items)
      result['rmse_on_device_check'] = result['rmse']
      result['rmse'], result['mae'] = federated['rmse'], federated['mae']
      if 'rated_loss' in federated:
        # The implicit head's reconstruction (what ranking uses) checked the same way.
        result['rated_loss_on_device_check'] = result['rated_loss']
        result['rated_loss'] = federated['rated_loss']
  return {'users': users, 'heldout': heldout}


# How each personalization method is described in report.md (personalization.py).
_DESCRIBE = {
    'budget': "FedRecon's parameters, each device reconstructing its own {draws} times (a fresh "
              'draw of unrated items each, {epochs} passes at step {lr:g}: its own budget) and '
              'keeping their mean.',
    'finetune': "FedRecon's parameters, each device then training its user parameters and a local "
                'copy of its items\' parameters on its own examples ({epochs} passes at step {lr:g}).',
}


def _evaluate_personalized(method, params, split, config, personalize, *, seed):
  """FedRecon's released parameters personalized by `method` on each device."""
  recon = config.recon()
  result = {'personalization': {'method': method,
                                **personalization.settings(method, personalize, recon)}}
  for group, train, test in (('users', split.train, split.test),
                             ('heldout', split.heldout_train, split.heldout_test)):
    models = personalization.personalize(method, params, train, recon=recon, config=personalize)
    result[group] = evaluation.device_metrics(models, train, test, seed=seed)
  return result


def summary(results: dict) -> dict:
  out = {}
  for name in compared(results):
    keys = ('hr@10', 'ndcg@10', 'recall@20') if name == 'popularity' else COLUMNS
    out[name] = dict(evaluation.summary_row(results[name]['users'], keys))
    out[name]['heldout'] = dict(evaluation.summary_row(results[name]['heldout'], keys))
    for extra in ('train_seconds', 'rounds', communication.BYTES_UP, communication.BYTES_DOWN,
                  'privacy', 'personalization'):
      if results[name].get(extra) is not None:
        out[name][extra] = results[name][extra]
  out['global_mean_rmse'] = results['global_mean_rmse']
  out['split'] = results['split']
  return evaluation.nan_to_none(out)


def _fmt(value):
  return '—' if value is None else f'{value:.4f}'


def table(results: dict, group: str) -> str:
  lines = ['| model | RMSE | MAE | HR@10 | NDCG@10 | Recall@20 |',
           '|---|---|---|---|---|---|']
  for name in compared(results):
    row = evaluation.nan_to_none(results[name][group])
    lines.append(f'| {name} | ' + ' | '.join(_fmt(row.get(c)) for c in COLUMNS) + ' |')
  return '\n'.join(lines)


def markdown(results: dict, output_dir: str) -> str:
  s = results['split']
  traffic = '; '.join(
      f'{name} {results[name][communication.BYTES_UP] / 1e6:.1f} MB up, '
      f'{results[name][communication.BYTES_DOWN] / 1e6:.1f} MB down'
      for name in config_lib.FEDERATED if results.get(name, {}).get(communication.BYTES_UP))
  times = ', '.join(
      f'{name} {results[name]["train_seconds"]:.0f} s'
      + (f' ({results[name]["rounds"]} rounds)' if results[name].get('rounds') else '')
      for name in config_lib.ALGORITHMS
      if name in results and results[name].get('train_seconds') is not None)
  skipped = ', '.join(f'{k} {v:,}' for k, v in s['unknown_items_skipped'].items()) or 'none'
  privacy = '; '.join(f'{name}: {results[name]["privacy_text"]}'
                      for name in config_lib.ALGORITHMS if name in results) or 'n/a'
  ranked = results.get('fedrecon', results['popularity'])
  implicit = [name for name in config_lib.ALGORITHMS if results.get(name, {}).get('implicit')]
  rating_only = [name for name in config_lib.ALGORITHMS
                 if name in results and not results[name].get('implicit')]
  ranking_by = ' '.join(filter(None, [
      f'{", ".join(implicit)} rank by the implicit head ("will this user rate it?", learned '
      'from\n  rated vs. unrated items sampled on each device), not by predicted rating.'
      if implicit else '',
      f'{", ".join(rating_only)} rank by predicted rating (no implicit head).'
      if rating_only else '']))
  personalized = ''.join(
      f'\n* {name}: {_DESCRIBE[results[name]["personalization"]["method"]].format(**results[name]["personalization"])} '
      'Every parameter it learns stays on the device; RMSE is the device\'s own (NumPy).'
      for name in compared(results) if 'personalization' in results[name])
  return f"""# Federated recommendation: {output_dir}

{s['training_users']} training users ({s['train_ratings']:,} train / {s['test_ratings']:,} test ratings), \
{s['heldout_users']} held-out users, {s['items']:,} items in the vocabulary. Ratings of items outside \
the vocabulary, skipped: {skipped}.

* RMSE / MAE: clipped predictions of every test rating (global-mean predictor:
  {results['global_mean_rmse']:.4f}). FedRecon's come from `build_fed_recon_eval`: each user's
  parameters are reconstructed on the device from their train ratings, then their test ratings scored.
* HR@10 / NDCG@10: each user's latest test item rated >= 4 ranked among 99 items they never rated
  (the same seeded negatives for every model); {ranked['users'].get('ranked_users', 0)} training
  users and {ranked['heldout'].get('ranked_users', 0)} held-out users have such an item.
  {ranking_by}
* Recall@20: test items rated >= 4 found in the top 20 of the whole catalogue (train items excluded).{personalized}

## Training users

{table(results, 'users')}

## Held-out users (never trained on; factors reconstructed from their train ratings)

{table(results, 'heldout')}

Training time (federated: time spent in rounds, over resumed runs too): {times or 'n/a'}.

Communication (item-parameter updates up, model broadcasts down; FedAvg's include the user table): \
{traffic or 'n/a'}.

Privacy: {privacy}.
"""


def curves(root: run_dir_lib.RunDir, name: str, *, centralized_rmse=None):
  """Test RMSE and training loss per round of each federated run."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  for algorithm in config_lib.FEDERATED:
    run = root.child(algorithm)
    rounds, rmse = run.curve(evaluation.TEST_RMSE)
    if not rounds:
      continue
    left.plot(rounds, rmse, label=algorithm)
    right.plot(*run.training_loss(), label=algorithm)
  left.set(xlabel='round', ylabel='test RMSE', title='Test RMSE (training users)')
  right.set(xlabel='round', ylabel='loss', title='Client training loss')
  if centralized_rmse is not None:
    left.axhline(centralized_rmse, color='gray', linestyle='--', label='centralized')
  for axis in (left, right):
    axis.grid(alpha=0.3)
    axis.legend()
  figure.tight_layout()
  root.save_figure(name, figure, dpi=100)
  plt.close(figure)


def write(output_dir: str, *, split: split_lib.Split | None = None,
          personalize: personalization.PersonalizeConfig = personalization.DEFAULT,
          log=progress.print_flushed) -> tuple[dict, str]:
  """Evaluates, writes summary.json, report.md and curves.png; returns the
  results and the report's text."""
  personalize.check()
  root = run_dir_lib.RunDir(output_dir)
  with root.lock(create=False):
    results = evaluate_all(output_dir, split=split, personalize=personalize, log=log)
    report = markdown(results, output_dir)
    root.write_json(run_dir_lib.SUMMARY, summary(results))
    root.write_text(run_dir_lib.REPORT, report)
    curves(root, 'curves.png',
           centralized_rmse=results.get('centralized', {}).get('users', {}).get('rmse'))
  return results, report

r"""What a curious server learns under each defence, next to what the defence costs.

For each job and each aggregator (the defence), this trains the job's model
with that aggregator, measures its quality, then runs the job's attack binary
against what the server receives under it, and writes one table per job:

    attack | defence | what the server sees | success | model quality

  python bench/privacy_attacks.py --output_dir=runs/privacy            # both jobs, ~40 min
  python bench/privacy_attacks.py --output_dir=/tmp/p --jobs=credit    # ~6 min
  python bench/privacy_attacks.py --output_dir=/tmp/p --jobs=rec --rec_rounds=30

Writes <output_dir>/privacy_attacks.md, privacy_attacks.csv and
privacy_attacks.json; every run directory it trains stays under
<output_dir>/<job>/<defence> (rerunning resumes and reuses finished steps). It
prints figures and asserts nothing. Credit's poisoning table is
bench/credit_poisoning.py's.
"""

import csv
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CREDIT_DEFENCES = ('mean', 'compressed', 'robust', 'median', 'trimmed_mean', 'secure')
# Recommendation: FedRecon's defences (the robust ones are credit's question:
# a median over 50 users' 2 MB updates is a server-memory exercise).
REC_DEFENCES = ('mean', 'compressed', 'robust', 'secure', 'dp')
# User-level DP-FedRecon at epsilon 10 (Poisson sampling; the server step and
# clip bench/privacy_utility.py found best). Central DP: the server sees the
# clipped updates before it adds its noise, and that is what is attacked.
REC_DP_FLAGS = ('--target_epsilon=10', '--client_sampling=poisson', '--dp_clip=0.1',
                '--server_lr=10')

flags.DEFINE_string('output_dir', None, 'Where the runs and the tables go.', required=True)
flags.DEFINE_list('jobs', ['credit', 'rec'], 'credit, rec or both.')
flags.DEFINE_list('credit_defences', list(CREDIT_DEFENCES), 'Aggregators to train and attack.')
flags.DEFINE_list('rec_defences', list(REC_DEFENCES), 'Aggregators to train and attack.')
flags.DEFINE_integer('rec_rounds', 100, 'FedRecon rounds per defence (the default run has 100).')
FLAGS = flags.FLAGS


def _run(*args):
  started = time.perf_counter()
  print('$', ' '.join(args), flush=True)
  result = subprocess.run([sys.executable, '-m', *args], cwd=REPO, capture_output=True, text=True)
  if result.returncode != 0:
    sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
    raise SystemExit(f'{args[0]} failed with exit {result.returncode}')
  print(f'  ({time.perf_counter() - started:.0f} s)', flush=True)
  return result.stdout


def _json(path):
  with open(path) as f:
    return json.load(f)


def credit_rows(root):
  rows = []
  for defence in FLAGS.credit_defences:
    run = os.path.join(root, 'credit', defence)
    if not os.path.exists(os.path.join(run, 'summary.json')):
      _run('tff_credit.train', f'--output_dir={run}', f'--aggregator={defence}')
      _run('tff_credit.evaluate', f'--output_dir={run}')
    quality = _json(os.path.join(run, 'summary.json'))['federated']['pooled']['auc']
    report = os.path.join(root, 'credit_attack', defence)
    if not os.path.exists(os.path.join(report, 'summary.json')):
      _run('tff_credit.attack', f'--output_dir={report}', f'--model_dir={run}',
           f'--aggregator={defence}')
    attack = _json(os.path.join(report, 'summary.json'))
    view = attack['setup']['view_text']
    records = attack['record_recovery']['all']
    rows.append(dict(job='credit', attack='record recovery (FedSGD, 1 customer)', defence=defence,
                     view=view, success=f"{records['exact_rate']:.1%} exact, "
                                         f"{records['raw_columns_rate']:.1%} raw columns, "
                                         f"labels {records['label_accuracy']:.1%}",
                     quality=f'pooled AUC {quality:.4f}'))
    fedsgd = attack['inversion']['settings']['fedsgd']
    rows.append(dict(job='credit', attack='gradient inversion (FedSGD)', defence=defence,
                     view=view, success=', '.join(
                         f"batch {b}: {fedsgd[b]['recovered_share']:.0%} rows"
                         for b in ('1', '8', '32') if b in fedsgd),
                     quality=f'pooled AUC {quality:.4f}'))
    labels = attack['label_inference']['rows']
    errors = [v['32']['mean_abs_error'] for v in labels.values() if '32' in v]
    if errors:
      rows.append(dict(job='credit', attack='label share (batch 32)', defence=defence, view=view,
                       success=f'mean |error| {sum(errors) / len(errors):.3f}',
                       quality=f'pooled AUC {quality:.4f}'))
  return rows


def _rec_quality(run):
  from tff_common import runtime
  from tff_rec import report
  runtime.install_execution_context()
  results = report.evaluate_all(run, log=lambda line: None)
  users = results['fedrecon']['users']
  return users['rmse'], users['hr@10']


def rec_rows(root):
  rows = []
  for defence in FLAGS.rec_defences:
    run = os.path.join(root, 'rec', defence)
    aggregator = 'mean' if defence == 'dp' else defence
    extra = REC_DP_FLAGS if defence == 'dp' else ()
    if not os.path.exists(os.path.join(run, 'fedrecon', 'model.npz')):
      _run('tff_rec.train', f'--output_dir={run}', f'--aggregator={aggregator}',
           f'--rounds={FLAGS.rec_rounds}', *extra)
    quality_file = os.path.join(run, 'quality.json')
    if not os.path.exists(quality_file):
      rmse, hr = _rec_quality(run)
      with open(quality_file, 'w') as f:
        json.dump({'rmse': rmse, 'hr@10': hr}, f)
    quality = _json(quality_file)
    cohort = [] if defence != 'secure' else ['--cohort=10', '--cohort=50']
    summary_file = os.path.join(run, 'attack', 'summary.json')
    settings = {v.get('setting') for v in _json(summary_file)['views']} if os.path.exists(
        summary_file) else set()
    if aggregator not in settings:
      _run('tff_rec.attack', f'--output_dir={run}', f'--aggregator={aggregator}', *cohort)
    for view in _json(summary_file)['views']:
      if view.get('setting') != aggregator:
        continue
      quality_text = f"RMSE {quality['rmse']:.4f}, HR@10 {quality['hr@10']:.4f}"
      items = view['rated_items']
      rows.append(dict(job='rec', attack='rated items (rating head)', defence=defence,
                       view=view['view'], success=f"F1 {items['rating_head']['f1']:.3f}",
                       quality=quality_text))
      rows.append(dict(job='rec', attack='rated items (implicit head, sign)', defence=defence,
                       view=view['view'], success=f"F1 {items['implicit_sign']['f1']:.3f} "
                       f"(every moved row: {items['implicit_touched']['f1']:.3f})",
                       quality=quality_text))
      ratings = view['ratings']
      rows.append(dict(job='rec', attack='rating values', defence=defence, view=view['view'],
                       success=f"RMSE {ratings['attack_rmse']:.3f} (model alone "
                       f"{ratings['model_only_rmse']:.3f})", quality=quality_text))
  return rows


def markdown(rows):
  lines = []
  for job, title in (('credit', 'Credit (5 banks)'), ('rec', 'Recommendation (FedRecon)')):
    job_rows = [r for r in rows if r['job'] == job]
    if not job_rows:
      continue
    lines += [f'## {title}', '', '| attack | defence | what the server sees | success | model quality |',
              '|---|---|---|---|---|']
    lines += [f"| {r['attack']} | {r['defence']} | {r['view']} | {r['success']} | {r['quality']} |"
              for r in job_rows]
    lines.append('')
  return '\n'.join(lines)


def main(argv):
  del argv
  root = os.path.abspath(FLAGS.output_dir)
  os.makedirs(root, exist_ok=True)
  rows = []
  if 'credit' in FLAGS.jobs:
    rows += credit_rows(root)
  if 'rec' in FLAGS.jobs:
    rows += rec_rows(root)
  text = '# What a curious server learns, and what each defence costs\n\n' + markdown(rows)
  with open(os.path.join(root, 'privacy_attacks.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(root, 'privacy_attacks.json'), 'w') as f:
    json.dump(rows, f, indent=1)
  with open(os.path.join(root, 'privacy_attacks.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  print(text)


if __name__ == '__main__':
  from tff_common import quiet
  quiet.import_tensorflow()
  app.run(main)

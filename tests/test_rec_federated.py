"""tff_rec on TFF's runtime: privacy of the update, learning, resume, evaluation, top-N."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tff_rec import synthetic

TINY = dict(clients_per_round=6, client_lr=0.2, server_lr=3.0, recon_lr=0.2, recon_epochs=3,
            dim=4, batch_size=4, rounds_per_checkpoint=1, centralized_epochs=5,
            negatives_per_rating=1.0, implicit_weight=5.0)


@pytest.fixture(scope='module')
def tiny_split():
  from tff_rec import split as split_lib  # pylint: disable=g-import-not-at-top
  return split_lib.split_ratings(synthetic.synthetic_ratings(), test_fraction=0.25,
                                 heldout_users_fraction=0.125, seed=0)


def _config(**overrides):
  from tff_rec import training  # pylint: disable=g-import-not-at-top
  return training.TrainConfig(**{**TINY, **overrides})


def _shapes(type_spec):
  """Every tensor shape inside a TFF type."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  shapes = []
  def visit(t):
    if isinstance(t, tff.TensorType):
      shapes.append(tuple(t.shape))
    elif isinstance(t, tff.FederatedType):
      visit(t.member)
    elif isinstance(t, tff.StructType):
      for _, member in tff.structure.iter_elements(t):
        visit(member)
    elif isinstance(t, tff.SequenceType):
      visit(t.element)
    elif isinstance(t, tff.FunctionType):
      if t.parameter is not None:
        visit(t.parameter)
      visit(t.result)
  visit(type_spec)
  return shapes


class _Recording:
  """Wraps the aggregator so a test sees the type of what clients send."""

  def __init__(self, inner):
    self.inner = inner
    self.value_types = []

  def create(self, value_type, weight_type):
    self.value_types.append(value_type)
    return self.inner.create(value_type, weight_type)


def _recording_aggregator(monkeypatch):
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from tff_rec import algorithms  # pylint: disable=g-import-not-at-top
  recording = _Recording(tff.aggregators.MeanFactory())
  # A WeightedAggregationFactory for TFF's type checks, recording on create.
  factory = type('RecordingFactory', (tff.aggregators.WeightedAggregationFactory,),
                 {'create': lambda self, v, w: recording.create(v, w)})()
  monkeypatch.setattr(algorithms.aggregation, 'build_aggregator',
                      lambda name, weighted: factory)
  return recording


def test_client_data_builds_each_users_dataset_on_demand(tiny_split):
  from tff_rec import clients  # pylint: disable=g-import-not-at-top
  part = tiny_split.train
  data = clients.client_data(part)
  assert data.client_ids == [str(u) for u in part.users]
  k = 2
  cid = str(part.users[k])
  examples = list(data.create_tf_dataset_for_client(cid).as_numpy_iterator())
  np.testing.assert_array_equal([e['x']['item'] for e in examples], part.items_of(k))
  np.testing.assert_array_equal([e['y'][0] for e in examples], part.ratings_of(k))
  # Per-round batches: a pure function of (seed, round, user), a permutation of the user's items.
  fn = clients.training_data_fn(part, batch_size=4, seed=0)
  def order(round_num):
    return np.concatenate([b['x']['item'] for b in fn([cid], round_num)[0].as_numpy_iterator()])
  np.testing.assert_array_equal(order(3), order(3))
  assert sorted(order(3)) == sorted(part.items_of(k)) and not np.array_equal(order(3), order(4))


def test_training_negatives_are_unrated_items_drawn_per_round(tiny_split):
  from tff_rec import clients  # pylint: disable=g-import-not-at-top
  part = tiny_split.train
  k = 2
  cid = str(part.users[k])
  rated = set(part.items_of(k).tolist())
  fn = clients.training_data_fn(part, batch_size=4, seed=0, num_items=tiny_split.num_items,
                                negatives_per_rating=1.0)
  def examples(round_num, fn=fn):
    batches = list(fn([cid], round_num)[0].as_numpy_iterator())
    return (np.concatenate([b['x']['item'] for b in batches]),
            np.concatenate([b['y'] for b in batches]))
  items, y = examples(3)
  real = y[:, 1] == 1
  # The ratings, unchanged, plus as many unrated items (is_rating 0).
  assert sorted(items[real].tolist()) == sorted(rated)
  negatives = items[~real]
  assert len(negatives) == len(rated) and len(set(negatives.tolist())) == len(negatives)
  assert not set(negatives.tolist()) & rated
  np.testing.assert_array_equal(y[~real, 1], 0.0)
  # A pure function of (seed, round, user): same round same draw, next round a fresh one.
  again, y_again = examples(3)
  np.testing.assert_array_equal(again, items)
  np.testing.assert_array_equal(y_again, y)
  later, y_later = examples(4)
  assert set(later[y_later[:, 1] == 0].tolist()) != set(negatives.tolist())
  other = clients.training_data_fn(part, batch_size=4, seed=1, num_items=tiny_split.num_items,
                                   negatives_per_rating=1.0)
  items_1, y_1 = examples(3, fn=other)
  assert set(items_1[y_1[:, 1] == 0].tolist()) != set(negatives.tolist())


def test_no_user_embedding_or_bias_reaches_the_server(tff_context, tiny_split, monkeypatch):
  del tff_context
  from tff_rec import training  # pylint: disable=g-import-not-at-top
  recording = _recording_aggregator(monkeypatch)
  dim, num_items = TINY['dim'], tiny_split.num_items
  process, layers = training.build_process(tiny_split, _config(algorithm='fedrecon'))
  global_shapes = {(num_items, dim), (num_items, 1), ()}
  # What clients send (the aggregated update) is exactly the item parameters
  # of both heads and the offset.
  (sent,) = recording.value_types
  assert sorted(_shapes(sent)) == sorted([(num_items, dim), (num_items, 1), ()] +
                                         [(num_items, dim), (num_items, 1)])
  assert layers == ['item_factors', 'item_bias', 'offset', 'implicit_item_factors',
                    'implicit_item_bias']
  # The server state and everything process.next takes or returns holds no
  # user-shaped tensor: user factors are [1, dim] and user bias [1, 1] on a client.
  state_shapes = set(_shapes(process.next.type_signature.result.state))
  assert state_shapes <= global_shapes | {(None,)}
  for shape in _shapes(process.next.type_signature):
    assert shape not in {(1, dim), (1, 1), (len(tiny_split.train), dim)}
  # The FedAvg comparison does ship the user table, which is why it is only a comparison.
  recording.value_types.clear()
  training.build_process(tiny_split, _config(algorithm='fedavg'))
  assert (len(tiny_split.train), dim) in _shapes(recording.value_types[0])


def test_fedrecon_lowers_loss_and_numpy_matches_federated_eval(tff_context, tiny_split, tmp_path):
  del tff_context
  from tff_rec import evaluation, model, params, algorithms, training  # pylint: disable=g-import-not-at-top,multiple-imports
  config = _config(rounds=12)
  data_config = training.DataConfig()
  trained = training.train(data_config=data_config, train_config=config, split=tiny_split,
                           output_dir=str(tmp_path), log=lambda s: None)
  import csv  # pylint: disable=g-import-not-at-top
  with open(tmp_path / 'fedrecon' / 'metrics.csv') as f:
    rows = list(csv.DictReader(f))
  first = np.mean([float(r['test_rmse']) for r in rows[:2]])
  last = np.mean([float(r['test_rmse']) for r in rows[-2:]])
  assert len(rows) == 12 and last < first
  assert float(rows[-1]['client_work/train/loss']) < float(rows[0]['client_work/train/loss'])
  # The on-device (NumPy) reconstruction is the one TFF's evaluation runs.
  federated = evaluation.federated_rating_metrics(
      eval_process=training.build_eval_process(tiny_split, config),
      weights=training.global_weights(trained), train=tiny_split.train, test=tiny_split.test,
      recon=config.recon(), num_items=tiny_split.num_items)
  users = evaluation.reconstruct_part(trained, tiny_split.train, config.recon())
  local = evaluation.rating_metrics(trained, users, tiny_split.test)
  assert federated['rmse'] == pytest.approx(local['rmse'], abs=1e-4)
  assert federated['mae'] == pytest.approx(local['mae'], abs=1e-4)
  # ...for the implicit head too (what ranking uses; RMSE does not see it).
  assert federated['rated_loss'] == pytest.approx(
      evaluation.rated_loss(trained, users, tiny_split.test), abs=1e-4)
  assert np.abs(users.s).max() > 0.01
  saved, _ = params.load(training.model_path(str(tmp_path), 'fedrecon'))
  np.testing.assert_array_equal(saved.item_factors, trained.item_factors)


def test_resumed_training_ends_equal_to_uninterrupted(tff_context, tiny_split, tmp_path):
  del tff_context
  from tff_rec import training  # pylint: disable=g-import-not-at-top
  data_config = training.DataConfig()
  quiet = dict(data_config=data_config, split=tiny_split, log=lambda s: None)
  full = training.train(train_config=_config(rounds=4), output_dir=str(tmp_path / 'a'), **quiet)
  training.train(train_config=_config(rounds=2), output_dir=str(tmp_path / 'b'), **quiet)
  lines = []
  resumed = training.train(train_config=_config(rounds=4), output_dir=str(tmp_path / 'b'),
                           **{**quiet, 'log': lines.append})
  assert any('resuming from the checkpoint of round 2' in line for line in lines)
  np.testing.assert_allclose(resumed.item_factors, full.item_factors, atol=1e-6)
  np.testing.assert_allclose(resumed.item_bias, full.item_bias, atol=1e-6)
  # Other hyperparameters in the same directory are refused, not mixed.
  from tff_common import errors  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.InputError, match='client_lr'):
    training.train(train_config=_config(rounds=5, client_lr=0.5),
                   output_dir=str(tmp_path / 'b'), **quiet)


def test_recommend_never_returns_a_rated_item(tiny_split):
  from tff_rec import evaluation, params, topn  # pylint: disable=g-import-not-at-top,multiple-imports
  rng = np.random.default_rng(0)
  n_items = tiny_split.num_items
  rating_only = params.MFParams(item_factors=rng.normal(size=(n_items, 4)).astype(np.float32),
                                item_bias=rng.normal(size=n_items).astype(np.float32),
                                offset=3.5, l2=0.01)
  two_head = params.MFParams(
      **{**rating_only.__dict__,
         'implicit_item_factors': rng.normal(size=(n_items, 4)).astype(np.float32),
         'implicit_item_bias': rng.normal(size=n_items).astype(np.float32)})
  for model, recon in (
      (rating_only, evaluation.ReconConfig(lr=0.1, epochs=3, batch_size=4)),
      (two_head, evaluation.ReconConfig(lr=0.1, epochs=3, batch_size=8, negatives_per_rating=1.0,
                                        implicit_weight=5.0))):
    for user in tiny_split.train.users:
      items, ratings = topn.user_ratings(tiny_split, int(user))
      # Ask for more than remain: only unrated items come back, best first.
      best, predicted = topn.top_n(model, items, ratings, n=n_items, recon=recon, user=int(user))
      assert not set(best.tolist()) & set(items.tolist())
      assert len(best) == n_items - len(set(items.tolist()))
      factors = recon.reconstruct(model, [recon.examples(n_items, int(user), items, ratings)])
      ranked_by = model.ranking_scores(factors, 0)[best]
      assert np.all(np.diff(ranked_by) <= 1e-6)
      # The rating-only model ranks by predicted rating, the two-head one by its implicit head.
      if model is rating_only:
        np.testing.assert_allclose(np.clip(ranked_by, 0.5, 5.0), predicted, rtol=1e-5)
      else:
        np.testing.assert_allclose(ranked_by, model.rated_logits(factors.s[0], best)[0], rtol=1e-5)


def _run(*args, timeout=240):
  return subprocess.run([sys.executable, '-m', *args], capture_output=True, text=True,
                        timeout=timeout, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_report_compares_the_four_models(tff_context, tiny_split, tmp_path):
  del tff_context
  from tff_rec import report, training  # pylint: disable=g-import-not-at-top,multiple-imports
  ratings_path = synthetic.write(synthetic.synthetic_ratings(), str(tmp_path / 'ml'), 'ml-latest')
  data_config = training.DataConfig(data=ratings_path, test_fraction=0.25,
                                    heldout_users_fraction=0.125)
  out = str(tmp_path / 'run')
  for algorithm, rounds in (('fedrecon', 3), ('fedavg', 2)):
    training.train(data_config=data_config, train_config=_config(algorithm=algorithm,
                                                                 rounds=rounds),
                   output_dir=out, log=lambda s: None)
  results = report.write(out, log=lambda s: None)
  with open(os.path.join(out, 'summary.json')) as f:
    summary = json.load(f)
  for name in ('fedrecon', 'fedavg', 'centralized'):
    assert {'rmse', 'mae', 'hr@10', 'ndcg@10'} <= set(summary[name])
    assert 0 < summary[name]['rmse'] < 3 and 0 <= summary[name]['hr@10'] <= 1
    assert summary[name]['heldout']['rmse'] > 0
  assert {'hr@10', 'ndcg@10'} <= set(summary['popularity'])
  # FedRecon's reported RMSE is TFF's federated evaluation; the on-device
  # NumPy reconstruction agrees with it.
  users = results['fedrecon']['users']
  assert users['rmse'] == pytest.approx(users['rmse_on_device_check'], abs=1e-4)
  assert users['rated_loss'] == pytest.approx(users['rated_loss_on_device_check'], abs=1e-4)
  with open(os.path.join(out, 'report.md')) as f:
    text = f.read()
  assert '| centralized |' in text and '## Held-out users' in text
  assert os.path.getsize(os.path.join(out, 'curves.png')) > 0


def _run(*args, timeout=240):
  return subprocess.run([sys.executable, '-m', *args], capture_output=True, text=True,
                        timeout=timeout, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_binaries_end_to_end(tmp_path):
  data_path = synthetic.write(synthetic.synthetic_ratings(), str(tmp_path / 'ml'), 'ml-1m')
  out = str(tmp_path / 'run')
  tiny = [f'--{k}={v}' for k, v in TINY.items()] + [f'--data={data_path}', f'--output_dir={out}']
  result = _run('tff_rec.train', '--rounds=2', *tiny)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'round 2/2' in result.stdout
  result = _run('tff_rec.evaluate', f'--output_dir={out}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert '| fedrecon |' in result.stdout and '| popularity |' in result.stdout
  result = _run('tff_rec.recommend', f'--output_dir={out}', '--user=3', '--n=5')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.count('Movie ') == 5
  # Bad input: one line naming the file and line, exit 2, nothing written.
  bad = tmp_path / 'bad' / 'ratings.dat'
  bad.parent.mkdir()
  bad.write_text('1::100::4::10\n1::101::x::11\n')
  result = _run('tff_rec.train', f'--data={bad}', f'--output_dir={tmp_path / "bad_run"}')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(f'error: {bad}, line 2, column 3')
  assert not os.path.exists(tmp_path / 'bad_run')


def test_kill_9_then_rerun_resumes_and_ends_equal(tmp_path):
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from tff_rec import params  # pylint: disable=g-import-not-at-top
  data_path = synthetic.write(synthetic.synthetic_ratings(), str(tmp_path / 'ml'), 'ml-100k')
  args = [f'--{k}={v}' for k, v in TINY.items()] + [f'--data={data_path}', '--rounds=6']
  root = os.path.dirname(os.path.dirname(__file__))
  killed = str(tmp_path / 'killed')
  log_path = tmp_path / 'killed.log'
  with open(log_path, 'w') as log:
    process = subprocess.Popen([sys.executable, '-m', 'tff_rec.train', f'--output_dir={killed}',
                                *args], stdout=log, stderr=subprocess.STDOUT, cwd=root)
  deadline = time.monotonic() + 120
  while 'round 3/6' not in log_path.read_text():
    assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
    time.sleep(0.1)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not os.path.exists(os.path.join(killed, 'fedrecon', 'model.npz'))
  resumed = _run('tff_rec.train', f'--output_dir={killed}', *args)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert 'resuming from the checkpoint of round' in resumed.stdout
  assert 'round 1/6' not in resumed.stdout
  full = _run('tff_rec.train', f'--output_dir={tmp_path / "full"}', *args)
  assert full.returncode == 0, full.stderr[-2000:]
  a, _ = params.load(os.path.join(killed, 'fedrecon', 'model.npz'))
  b, _ = params.load(os.path.join(tmp_path, 'full', 'fedrecon', 'model.npz'))
  np.testing.assert_allclose(a.item_factors, b.item_factors, atol=1e-6)
  np.testing.assert_allclose(a.item_bias, b.item_bias, atol=1e-6)
  assert a.offset == pytest.approx(b.offset, abs=1e-6)


def test_train_configs_of_older_versions_load_or_are_refused(tmp_path):
  from tff_common import errors  # pylint: disable=g-import-not-at-top
  from tff_rec import training  # pylint: disable=g-import-not-at-top
  def stored(**values):
    run = tmp_path / 'fedrecon'
    run.mkdir(exist_ok=True)
    (run / 'train_config.json').write_text(json.dumps(values))
    return str(tmp_path)
  # Before implicit feedback: a rating-only model, reconstructed as it was trained.
  config = training.load_train_config(stored(algorithm='fedrecon', batch_size=16), 'fedrecon')
  assert not config.implicit and config.examples_per_batch() == 16
  assert config.recon().negatives_per_rating == 0 and config.recon().implicit_weight == 0
  config = training.load_train_config(
      stored(algorithm='fedrecon', negatives_per_rating=0.0, negative_weight=0.0), 'fedrecon')
  assert not config.implicit
  # Imputed negative ratings (the old scheme) cannot be evaluated as either head.
  with pytest.raises(errors.InputError, match='older tff_rec'):
    training.load_train_config(
        stored(algorithm='fedrecon', negatives_per_rating=1.0, negative_weight=0.1), 'fedrecon')
  # Either setting at 0 turns the head off everywhere.
  assert training.TrainConfig().implicit
  off = training.TrainConfig(implicit_weight=0.0)
  assert not off.implicit and off.negatives() == 0 and off.examples_per_batch() == 16

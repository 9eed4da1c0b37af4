"""tff_rec.attacks: what a curious server recovers from FedRecon updates."""

import json
import os

import numpy as np
import pytest

from tests.tff_rec import helpers
from tff_common import aggregation
from tff_common import errors
from tff_common import run_dir as run_dir_lib
from tff_rec import attacks
from tff_rec import config as config_lib
from tff_rec import params as params_lib
from tff_rec import split as split_lib
from tff_rec import synthetic

ROUND = 3
# More items than the shared tiny split, so that a cohort of 10 leaves rows untouched.
USERS, ITEMS = 24, 120
SPLIT = dict(test_fraction=0.25, heldout_users_fraction=0.125)


def _ratings():
  return synthetic.synthetic_ratings(num_users=USERS, num_items=ITEMS)


def _released_params(split, config) -> params_lib.MFParams:
  """A model as training could have released it (small random item parameters)."""
  rng = np.random.default_rng(0)
  n, dim = split.num_items, config.dim
  return params_lib.MFParams(
      item_factors=rng.normal(0, 0.1, (n, dim)).astype(np.float32),
      item_bias=rng.normal(0, 0.3, n).astype(np.float32), offset=split.global_mean(),
      l2=config.l2, implicit_l2=config.implicit_l2,
      implicit_item_factors=rng.normal(0, 0.1, (n, dim)).astype(np.float32),
      implicit_item_bias=rng.normal(0, 0.3, n).astype(np.float32))


@pytest.fixture(scope='module')
def split():
  return split_lib.split_ratings(_ratings(), **SPLIT)


@pytest.fixture(scope='module')
def setting(split):
  """The job's process observing a released model, and 4 target users."""
  config = helpers.tiny_config(algorithm='fedrecon')
  params = _released_params(split, config)
  observe = attacks.build_observer(split, config, params, aggregator=aggregation.MEAN)
  targets = attacks.target_users(split, config, users=4, round_num=ROUND)
  return config, params, observe, targets


def _attack(split, setting, cohort):
  config, params, observe, targets = setting
  return attacks.attack_view(observe, params, split, config, targets=targets, cohort=cohort,
                             round_num=ROUND, log=lambda line: None)


def test_one_clients_update_gives_its_rated_items_and_the_cover_hides_nothing(
    split, setting):
  result = _attack(split, setting, cohort=1)
  assert len(result.users) == 4
  # The rating head's touched rows are exactly the rated items.
  np.testing.assert_array_equal(result.scores[attacks.RATING_HEAD], 1.0)
  # The implicit head's sampled items (one per rating) dilute every touched row...
  precision, recall, _ = result.scores[attacks.IMPLICIT_TOUCHED].T
  np.testing.assert_array_equal(recall, 1.0)
  assert np.all(precision < 0.75)
  np.testing.assert_array_equal(result.claimed[attacks.IMPLICIT_TOUCHED], 2 * result.rated)
  # ...but the sign of the item-bias delta separates rated from sampled.
  np.testing.assert_array_equal(result.scores[attacks.IMPLICIT_SIGN], 1.0)


def test_a_cohorts_aggregate_blurs_the_rated_set(split, setting):
  one = attacks.view_summary(_attack(split, setting, cohort=1))
  cohort = attacks.view_summary(_attack(split, setting, cohort=10))
  assert cohort['cohort'] == 10 and cohort['users'] == 4
  rated = cohort['rated_items'][attacks.RATING_HEAD]
  # Attributing everything the aggregate touched keeps every rated item...
  assert rated['recall'] == 1.0
  # ...among many more: precision and F1 fall.
  assert rated['precision'] < 0.8 * one['rated_items'][attacks.RATING_HEAD]['precision']
  assert rated['f1'] < one['rated_items'][attacks.RATING_HEAD]['f1']


def test_ratings_recovered_from_one_update_beat_the_guesses(split, setting):
  summary = attacks.view_summary(_attack(split, setting, cohort=1))
  ratings = summary['ratings']
  assert ratings['ratings'] == sum(
      len(split.train.items_of(split.train.position(int(u)))) for u in setting[3])
  assert ratings['attack_rmse'] < 0.5 * ratings['global_mean_rmse']
  assert ratings['attack_rmse'] < 0.5 * ratings['model_only_rmse']


def test_touched_rows_stand_above_the_noise_floor():
  rng = np.random.default_rng(0)
  exact = np.zeros((200, 3), np.float32)
  exact[[4, 9]] = 1e-6
  np.testing.assert_array_equal(np.flatnonzero(attacks.touched(exact)), [4, 9])
  # Noise everywhere (a quantized or noised view): rows far above it, and few others.
  noisy = rng.normal(0, 0.01, (1000, 3))
  noisy[[4, 9], 0] += 0.1
  found = attacks.touched(noisy[:, :2], noisy[:, 2:])
  assert found[[4, 9]].all() and found.sum() <= 2 + 10
  # Quantized: an untouched value is one of the two levels next to 0, blurred a little.
  levels = np.where(rng.random((1000, 3)) < 0.97, -1e-6, 2e-5)
  levels *= 1 + 1e-4 * rng.random(levels.shape)
  levels[[4, 9], 1] = [2e-4, -3e-5]
  np.testing.assert_array_equal(np.flatnonzero(attacks.touched(levels)), [4, 9])


def test_cohorts_cover_every_target_once_and_are_full():
  rng = np.random.default_rng(0)
  population = [str(u) for u in range(20)]
  targets = population[:7]
  groups = attacks.cohorts_of(targets, 3, population, rng)
  assert [len(g) for g in groups] == [3, 3, 3]
  assert sorted(sum((g[:3] for g in groups[:2]), []) + groups[2][:1]) == sorted(targets)
  assert set(groups[2][1:]).isdisjoint(targets)  # filled with non-targets
  assert all(len(set(g)) == len(g) for g in groups)


def _trained_directory(path, config):
  """A run directory as tff_rec.train leaves it (data settings, fedrecon settings, model)."""
  data_path = synthetic.write(_ratings(), os.path.join(path, 'data'), 'ml-latest')
  data = config_lib.DataConfig(data=data_path, **SPLIT)
  split = split_lib.load_and_split(data, log=lambda line: None)
  root = run_dir_lib.RunDir(os.path.join(path, 'run'))
  root.claim(config_lib.data_settings(data, split))
  run = root.child('fedrecon')
  run.makedirs()
  run.write_json(run_dir_lib.CONFIG, config.settings())
  run.save_model(params_lib.to_arrays(_released_params(split, config)), algorithm='fedrecon',
                 rounds=2, seconds=0.0)
  return root


def test_run_attacks_what_secure_aggregation_shows_and_writes_reports(tmp_path, setting,
                                                                      monkeypatch):
  config = helpers.tiny_config(algorithm='fedrecon', rounds=2)
  root = _trained_directory(str(tmp_path), config)
  # The fixture's process (same data, model and settings; the mean of the
  # cohort instead of its secure sum) saves compiling secure aggregation here.
  monkeypatch.setattr(attacks, 'build_observer', lambda *args, **kwargs: setting[2])
  secure = aggregation.AggregatorConfig(aggregator='secure')
  summary = attacks.run(root.path, aggregator=secure,
                        attack=attacks.AttackConfig(cohort=(10,)), log=lambda line: None)
  # The server sees only cohort sums: one aggregate view, the round's participants attacked.
  assert [v['cohort'] for v in summary['views']] == [10]
  assert summary['users'] == config.clients_per_round and not summary['individual_updates']
  assert summary['views'][0]['rated_items'][attacks.RATING_HEAD]['precision'] < 1.0
  report_dir = root.child(attacks.ATTACK_DIR).child('secure')
  for name in (run_dir_lib.REPORT, run_dir_lib.SUMMARY, attacks.FIGURE):
    assert report_dir.exists(name), name
  assert json.loads(open(report_dir.file(run_dir_lib.SUMMARY)).read())['setting'] == 'secure'
  index = open(root.child(attacks.ATTACK_DIR).file(run_dir_lib.REPORT)).read()
  assert '| secure | cohort of 10 |' in index
  # The models' directory is untouched: the evaluation still finds only its algorithms.
  assert sorted(os.listdir(root.child('fedrecon').path)) == ['config.json', 'model.npz']


def test_bad_input_is_one_error_before_anything_is_written(tmp_path):
  config = helpers.tiny_config(algorithm='fedrecon', rounds=2)
  with pytest.raises(errors.InputError, match='train first'):
    attacks.run(str(tmp_path / 'none'), aggregator=aggregation.MEAN)
  assert not os.path.exists(tmp_path / 'none')
  root = _trained_directory(str(tmp_path), config)
  with pytest.raises(errors.InputError, match=r'--cohort=99: expected at most 21'):
    attacks.run(root.path, aggregator=aggregation.MEAN, attack=attacks.AttackConfig(cohort=(99,)),
                log=lambda line: None)
  with pytest.raises(errors.InputError, match=r'--users=0'):
    attacks.run(root.path, aggregator=aggregation.MEAN, attack=attacks.AttackConfig(users=0))
  assert not root.exists(attacks.ATTACK_DIR)

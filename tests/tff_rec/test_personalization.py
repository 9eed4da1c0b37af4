"""tff_rec.personalization: device-side methods keep what they learn on the device,
fine-tuning fits the device's own examples, and the settings are checked."""

import numpy as np
import pytest

from tff_common import errors
from tff_rec import params as params_lib
from tff_rec import personalization
from tff_rec import reconstruction


def _two_head_params(rng, num_items=40, dim=4):
  return params_lib.MFParams(
      item_factors=rng.normal(scale=0.5, size=(num_items, dim)).astype(np.float32),
      item_bias=rng.normal(scale=0.3, size=num_items).astype(np.float32), offset=3.0, l2=0.01,
      implicit_item_factors=rng.normal(scale=0.5, size=(num_items, dim)).astype(np.float32),
      implicit_item_bias=rng.normal(scale=0.3, size=num_items).astype(np.float32),
      implicit_l2=0.005)


RECON = reconstruction.ReconConfig(lr=0.05, epochs=3, batch_size=8, negatives_per_rating=2.0,
                                   implicit_weight=5.0, seed=0)


def _devices(rng, params, users=3):
  """Examples of `users` devices: 12 ratings each and the unrated items they sample."""
  examples = []
  for user in range(users):
    items = rng.choice(params.num_items, size=12, replace=False)
    ratings = rng.integers(1, 6, size=12).astype(np.float32)
    examples.append(RECON.examples(params.num_items, user, items, ratings))
  return examples


def _arrays(params):
  return {k: np.array(v) for k, v in params_lib.to_arrays(params).items()}


@pytest.mark.parametrize('method', personalization.METHODS)
def test_personalization_leaves_the_released_parameters_unchanged(method):
  rng = np.random.default_rng(0)
  params = _two_head_params(rng)
  before = _arrays(params)
  examples = _devices(rng, params)
  config = personalization.PersonalizeConfig(personalize=(method,), finetune_epochs=3)
  devices = personalization.device_models(method, params, examples, recon=RECON, config=config)
  # What the server released (and would aggregate from) is untouched: every
  # parameter the method learned lives in the device's own rows and copies.
  for name, value in _arrays(params).items():
    np.testing.assert_array_equal(value, before[name], err_msg=name)
  plain = personalization.device_models(None, params, examples, recon=RECON, config=config)
  assert not np.allclose(devices.users.s, plain.users.s)
  for k, (items, _, _) in enumerate(examples):
    # Items a device has no example of keep the released scores.
    unseen = np.setdiff1d(np.arange(params.num_items), items)
    expected = params.rated_logits(devices.users.s[k])[0]
    np.testing.assert_allclose(devices.ranking_scores(k)[unseen], expected[unseen], rtol=1e-5)


def test_without_copies_a_device_scores_as_the_released_model():
  rng = np.random.default_rng(1)
  params = _two_head_params(rng)
  examples = _devices(rng, params)
  users = RECON.reconstruct(params, examples)
  devices = personalization.device_models(None, params, examples, recon=RECON,
                                          config=personalization.PersonalizeConfig())
  for k in range(len(examples)):
    np.testing.assert_allclose(devices.ranking_scores(k), params.ranking_scores(users, k),
                               rtol=1e-6)
    np.testing.assert_allclose(devices.scores(k, np.arange(5)),
                               params.scores(users.p[k], users.b_u[k:k + 1], np.arange(5))[0],
                               rtol=1e-6)


def test_finetuning_lowers_the_devices_own_train_loss():
  rng = np.random.default_rng(2)
  params = _two_head_params(rng)
  examples = _devices(rng, params)
  reconstructed = personalization.device_models(None, params, examples, recon=RECON,
                                                config=personalization.PersonalizeConfig())
  tuned = personalization.device_models(
      'finetune', params, examples, recon=RECON,
      config=personalization.PersonalizeConfig(finetune_epochs=5, finetune_lr=0.05))
  for k, example in enumerate(examples):
    before = reconstructed.train_loss(k, example, RECON.implicit_weight)
    after = tuned.train_loss(k, example, RECON.implicit_weight)
    assert after < 0.9 * before
    # Its copy holds exactly the items of its examples.
    np.testing.assert_array_equal(tuned.copies[k].items, np.unique(example[0]))


def test_finetuning_one_step_matches_the_loss_gradient():
  """One full-batch SGD step of `finetune_one` is -lr x the gradient of `train_loss`
  (checked against central differences on a user and an item parameter)."""
  rng = np.random.default_rng(3)
  params = _two_head_params(rng, num_items=12, dim=3)
  example = _devices(rng, params, users=1)[0]
  n = len(example[0])
  user = (rng.normal(size=3).astype(np.float32), np.float32(0.2),
          rng.normal(size=3).astype(np.float32))
  lr = 1e-3
  (p, _, s), copy = personalization.finetune_one(params, example, user, lr=lr, epochs=1,
                                                 batch_size=n, implicit_weight=5.0)

  def loss(p0=user[0], s0=user[2], t_row=None, item=None):
    local = params_lib.MFParams(**{**params.__dict__})
    if t_row is not None:
      local.implicit_item_factors = params.implicit_item_factors.copy()
      local.implicit_item_factors[item] = t_row
    devices = personalization.DeviceModels(
        local, params_lib.UserFactors(p0[None], np.array([user[1]]), s0[None]))
    return devices.train_loss(0, example, 5.0)

  eps = 1e-3
  e0 = np.eye(3)[0]
  grad_p0 = (loss(p0=user[0] + eps * e0) - loss(p0=user[0] - eps * e0)) / (2 * eps)
  grad_s0 = (loss(s0=user[2] + eps * e0) - loss(s0=user[2] - eps * e0)) / (2 * eps)
  item = int(copy.items[0])
  t = params.implicit_item_factors[item]
  grad_t0 = (loss(t_row=t + eps * e0, item=item) - loss(t_row=t - eps * e0, item=item)) / (2 * eps)
  assert (user[0][0] - p[0]) / lr == pytest.approx(grad_p0, rel=2e-2, abs=1e-3)
  assert (user[2][0] - s[0]) / lr == pytest.approx(grad_s0, rel=2e-2, abs=1e-3)
  assert (t[0] - copy.implicit_item_factors[0, 0]) / lr == pytest.approx(grad_t0, rel=2e-2,
                                                                          abs=1e-3)


def test_validation_split_holds_out_part_of_each_users_ratings(tiny_split):
  part = tiny_split.train
  kept, held = personalization.validation_split(part, fraction=0.2, seed=0)
  assert kept.num_ratings + held.num_ratings == part.num_ratings
  for k in range(len(part)):
    rows = sorted(zip(part.items_of(k).tolist(), part.ratings_of(k).tolist()))
    both = sorted(zip(kept.items_of(k).tolist() + held.items_of(k).tolist(),
                      kept.ratings_of(k).tolist() + held.ratings_of(k).tolist()))
    assert rows == both
    assert len(kept.items_of(k)) >= 1
    if len(rows) >= 2:
      assert len(held.items_of(k)) >= 1
  again = personalization.validation_split(part, fraction=0.2, seed=0)[1]
  np.testing.assert_array_equal(again.items, held.items)


def test_config_names_methods_or_none():
  assert personalization.PersonalizeConfig(personalize=['none']).personalize == ()
  assert personalization.PersonalizeConfig(personalize=[]).personalize == ()
  config = personalization.PersonalizeConfig(personalize=['budget', 'finetune'])
  config.check()
  assert config.personalize == ('budget', 'finetune')
  for bad, needle in ((['bogus'], "--personalize='bogus'"),
                      (['budget', 'budget'], 'at most once'),
                      (['none', 'budget'], '--personalize=')):
    with pytest.raises(errors.InputError, match=needle):
      personalization.PersonalizeConfig(personalize=bad).check()
  with pytest.raises(errors.InputError, match='--budget_epochs=0'):
    personalization.PersonalizeConfig(budget_epochs=0).check()
  with pytest.raises(errors.InputError, match='--finetune_lr=0'):
    personalization.PersonalizeConfig(finetune_lr=0.0).check()


def test_budget_averages_fresh_draws_of_unrated_items():
  rng = np.random.default_rng(4)
  params = _two_head_params(rng)
  examples = _devices(rng, params)
  plain = RECON.reconstruct(params, examples)
  same = personalization.PersonalizeConfig(budget_draws=1, budget_epochs=RECON.epochs,
                                           budget_lr=RECON.lr)
  one = personalization.device_models('budget', params, examples, recon=RECON, config=same)
  # One draw at training's budget is FedRecon's own reconstruction.
  for a, b in zip(one.users, plain):
    np.testing.assert_array_equal(a, b)
  config = personalization.PersonalizeConfig(budget_draws=3)
  draws = [personalization.draw_examples(examples[0], recon=RECON, num_items=params.num_items,
                                         user=0, draw=d) for d in range(3)]
  # Each draw: the same ratings, other unrated items (never a rated one).
  rated = np.sort(examples[0][0][examples[0][2] == 1])
  for drawn in draws[1:]:
    np.testing.assert_array_equal(np.sort(drawn[0][drawn[2] == 1]), rated)
    assert set(drawn[0][drawn[2] == 0].tolist()) != set(examples[0][0][examples[0][2] == 0].tolist())
    assert not set(drawn[0][drawn[2] == 0].tolist()) & set(rated.tolist())
  mean = personalization.device_models('budget', params, examples, recon=RECON, config=config)
  again = personalization.device_models('budget', params, examples, recon=RECON, config=config)
  np.testing.assert_array_equal(mean.users.s, again.users.s)
  budget = config.budget_recon(RECON)
  expected = np.mean([budget.reconstruct(params, [d]).s[0] for d in draws], axis=0)
  np.testing.assert_allclose(mean.users.s[0], expected, rtol=1e-5, atol=1e-6)


def test_a_bad_personalize_flag_is_one_error_before_anything_is_read(tmp_path):
  from tests.tff_rec import helpers
  from tff_rec import topn
  result = helpers.run_module('tff_rec.evaluate', f'--output_dir={tmp_path}/none',
                              '--personalize=budget,bogus')
  assert result.returncode == 2, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "--personalize='bogus'" in lines[0], result.stderr
  # One user's list is personalized by one method at most.
  with pytest.raises(errors.InputError, match='--personalize=.budget,finetune.: expected none or one of'):
    topn.recommend(str(tmp_path / 'none'), user=1, personalize=personalization.PersonalizeConfig(
        personalize=['budget', 'finetune']))
  assert not (tmp_path / 'none').exists()

"""tff_rec.topn: on-device top-N lists never hold an item the user rated."""

import numpy as np

from tff_rec import params
from tff_rec import reconstruction
from tff_rec import topn


def test_recommend_never_returns_a_rated_item(tiny_split):
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
      (rating_only, reconstruction.ReconConfig(lr=0.1, epochs=3, batch_size=4)),
      (two_head, reconstruction.ReconConfig(lr=0.1, epochs=3, batch_size=8,
                                            negatives_per_rating=1.0, implicit_weight=5.0))):
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


def test_a_user_who_rated_everything_is_told_so():
  text = topn.format_table([], user=7, rated=24, algorithm='fedrecon', ranked_by='x')
  assert text == ('user 7: has rated all 24 movies of the vocabulary (fedrecon); '
                  'there is nothing left to recommend')


def test_a_personalized_list_is_the_devices_own_ranking(tiny_split):
  from tff_rec import personalization
  rng = np.random.default_rng(1)
  n_items = tiny_split.num_items
  model = params.MFParams(
      item_factors=rng.normal(size=(n_items, 4)).astype(np.float32),
      item_bias=rng.normal(size=n_items).astype(np.float32), offset=3.5, l2=0.01,
      implicit_item_factors=rng.normal(size=(n_items, 4)).astype(np.float32),
      implicit_item_bias=rng.normal(size=n_items).astype(np.float32))
  recon = reconstruction.ReconConfig(lr=0.1, epochs=3, batch_size=8, negatives_per_rating=1.0,
                                     implicit_weight=5.0)
  config = personalization.PersonalizeConfig(budget_draws=3, finetune_epochs=2)
  user = int(tiny_split.train.users[0])
  items, ratings = topn.user_ratings(tiny_split, user)
  plain_factors = recon.reconstruct(model, [recon.examples(n_items, user, items, ratings)])
  for method in personalization.METHODS:
    best, _ = topn.top_n(model, items, ratings, n=5, recon=recon, user=user,
                         personalize=method, config=config)
    device = personalization.device_models(
        method, model, [recon.examples(n_items, user, items, ratings)], recon=recon,
        config=config, users=[user])
    scores = device.ranking_scores(0)
    assert not set(best.tolist()) & set(items.tolist())
    assert np.all(np.diff(scores[best]) <= 1e-6)
    assert scores[best[-1]] >= np.delete(scores, np.concatenate([items, best])).max() - 1e-6
    # The device ranked with its personalized parameters, not the plain reconstruction.
    assert not np.allclose(device.users.s, plain_factors.s)

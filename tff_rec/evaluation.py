"""Rating and ranking quality of a trained recommender (Python side, after training).

*   Rating prediction: RMSE and MAE over all test ratings. For Federated
    Reconstruction this runs as a federated computation
    (`build_fed_recon_eval`): each client rebuilds its user parameters from its
    train ratings (and unrated items it samples), then scores its test
    ratings; only metric sums leave it.
*   Ranking, leave-one-out: a user's latest liked (>= 4 stars) test item is
    ranked among 99 items the user never rated, sampled with a seed fixed per
    user; HR@10 and NDCG@10. Full catalogue: Recall@20 of the test items rated
    >= 4, among all items the user has no train rating for. Models rank by
    `MFParams.ranking_scores`: the implicit head when they have one.

Users whose parameters a model does not hold (every user under FedRecon;
held-out users under every model) get them by on-device reconstruction
(`reconstruction.reconstruct`) from their train ratings.
"""

import collections
from collections.abc import Callable
from typing import Optional

import numpy as np

from tff_rec import data as data_lib
from tff_rec import params as params_lib
from tff_rec import ranking
from tff_rec import reconstruction
from tff_rec import split as split_lib

NUM_NEGATIVES = 99
# The per-round metric training adds (training users' test RMSE).
TEST_RMSE = 'test_rmse'
HR_K = 10
RECALL_K = 20


def training_user_factors(params: params_lib.MFParams, split: split_lib.Split,
                          recon: reconstruction.ReconConfig) -> params_lib.UserFactors:
  """Training users' parameters: the model's user table, or each rebuilt on the device."""
  table = params.table()
  if table is not None:
    return table
  return reconstruction.reconstruct_part(params, split.train, recon)


def rating_metrics(params: params_lib.MFParams, users: params_lib.UserFactors,
                   test: split_lib.UserRatings) -> dict[str, float]:
  """RMSE / MAE of clipped predictions over all of `test`'s ratings."""
  return _rating_metrics(lambda k, items: params.scores(users.p[k], users.b_u[k:k + 1], items)[0],
                         test)


def _rating_metrics(predict: Callable[[int, np.ndarray], np.ndarray],
                    test: split_lib.UserRatings) -> dict[str, float]:
  """RMSE / MAE over `test` of `predict(user position, items)`, clipped to the scale."""
  errors = []
  for k in range(len(test)):
    items = test.items_of(k)
    if len(items):
      predicted = np.clip(predict(k, items), data_lib.MIN_RATING, data_lib.MAX_RATING)
      errors.append(predicted - test.ratings_of(k))
  errors = np.concatenate(errors) if errors else np.zeros(0)
  if not len(errors):
    return {'rmse': float('nan'), 'mae': float('nan'), 'ratings': 0}
  return {'rmse': float(np.sqrt(np.mean(errors ** 2))),
          'mae': float(np.mean(np.abs(errors))), 'ratings': int(len(errors))}


def rated_loss(params: params_lib.MFParams, users: params_lib.UserFactors,
               test: split_lib.UserRatings) -> float:
  """The implicit head's mean -log P(rated) over all of `test`'s ratings
  (`model.RatedLoss` on test batches)."""
  losses = [np.logaddexp(0.0, -params.rated_logits(users.s[k], test.items_of(k))[0])
            for k in range(len(test)) if len(test.items_of(k))]
  return float(np.mean(np.concatenate(losses))) if losses else float('nan')


def ranking_metrics(score_fn: Callable[[int], np.ndarray], train: split_lib.UserRatings,
                    test: split_lib.UserRatings, *, num_items: int,
                    seed: int) -> dict[str, float]:
  """HR@10 / NDCG@10 (leave-one-out, 99 negatives) and Recall@20 over users.

  Args:
    score_fn: User position k -> scores of every item.
    train, test: The users' train and test ratings (same users, same order).
    num_items: Catalogue size.
    seed: With the raw user id, seeds each user's negatives, so every model
      is ranked against the same negatives.
  """
  hits, gains, recalls = [], [], []
  for k in range(len(test)):
    test_items = test.items_of(k)
    if not len(test_items):
      continue
    train_items = train.items_of(k)
    rows = test.rows(k)
    positive = ranking.leave_one_out_item(test_items, test.ratings[rows], test.timestamps[rows])
    if positive < 0:
      continue  # nothing liked in test: no positive to rank
    scores = score_fn(k)
    rng = np.random.default_rng([seed, int(test.users[k])])
    negatives = ranking.sample_negatives(
        num_items, np.concatenate([train_items, test_items]), count=NUM_NEGATIVES, rng=rng)
    rank = ranking.rank_of_positive(scores[positive], scores[negatives])
    hits.append(ranking.hit_rate(rank, HR_K))
    gains.append(ranking.ndcg(rank, HR_K))
    liked = test_items[test.ratings[rows] >= ranking.LIKED]
    recommended = ranking.top_k(scores, RECALL_K, exclude=train_items)
    recalls.append(ranking.recall_at_k(recommended, liked, RECALL_K))
  if not hits:
    return {f'hr@{HR_K}': float('nan'), f'ndcg@{HR_K}': float('nan'),
            f'recall@{RECALL_K}': float('nan'), 'ranked_users': 0}
  return {f'hr@{HR_K}': float(np.mean(hits)), f'ndcg@{HR_K}': float(np.mean(gains)),
          f'recall@{RECALL_K}': float(np.mean(recalls)), 'ranked_users': len(hits)}


def mf_metrics(params: params_lib.MFParams, users: params_lib.UserFactors,
               train: split_lib.UserRatings, test: split_lib.UserRatings, *,
               seed: int) -> dict[str, float]:
  """Rating metrics of the rating head and ranking metrics of what the model
  ranks by (`MFParams.ranking_scores`), for users with parameters `users`."""
  result = rating_metrics(params, users, test)
  result.update(ranking_metrics(
      lambda k: params.ranking_scores(users, k), train, test,
      num_items=params.num_items, seed=seed))
  return result


def device_metrics(models, train: split_lib.UserRatings, test: split_lib.UserRatings, *,
                   seed: int) -> dict[str, float]:
  """`mf_metrics` of personalized device models (`personalization.DeviceModels`):
  each user predicts and ranks with their own device's parameters."""
  result = _rating_metrics(models.scores, test)
  result.update(ranking_metrics(models.ranking_scores, train, test,
                                num_items=models.params.num_items, seed=seed))
  return result


def popularity_metrics(scores: np.ndarray, train: split_lib.UserRatings,
                       test: split_lib.UserRatings, *, seed: int) -> dict[str, float]:
  return ranking_metrics(lambda k: scores, train, test, num_items=len(scores), seed=seed)


def federated_rating_metrics(*, eval_process, weights, train: split_lib.UserRatings,
                             test: split_lib.UserRatings, recon: reconstruction.ReconConfig,
                             num_items: int) -> dict[str, float]:
  """RMSE / MAE from TFF's `build_fed_recon_eval`, one client per user with test ratings."""
  # TF only here: the rest of the evaluation is NumPy.
  import tensorflow_federated as tff

  from tff_rec import clients
  datasets = [clients.eval_dataset(train, test, k, recon=recon, num_items=num_items)
              for k in range(len(test)) if len(test.items_of(k))]
  if not datasets:
    return {'rmse': float('nan'), 'mae': float('nan'), 'clients': 0}
  state = eval_process.initialize()
  state = eval_process.set_model_weights(
      state, tff.learning.models.ModelWeights(trainable=list(weights), non_trainable=[]))
  output = eval_process.next(state, datasets)
  metrics = output.metrics['client_work']['eval']['current_round_metrics']
  result = {'rmse': float(metrics['rmse']), 'mae': float(metrics['mae']),
            'clients': len(datasets)}
  if 'rated_loss' in metrics:
    result['rated_loss'] = float(metrics['rated_loss'])
  return result


def nan_to_none(value):
  if isinstance(value, dict):
    return {k: nan_to_none(v) for k, v in value.items()}
  if isinstance(value, float) and np.isnan(value):
    return None
  return value


def summary_row(metrics: Optional[dict], keys) -> collections.OrderedDict:
  return collections.OrderedDict((k, (metrics or {}).get(k)) for k in keys)

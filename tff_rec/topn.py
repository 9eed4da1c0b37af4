"""On-device top-N: a user's factors rebuilt from their own ratings, then ranked.

`top_n` runs where the user's ratings are (their device): it needs only the
global item parameters the server released and the user's ratings, and sends
nothing back. With a personalization method (`personalization.METHODS`) the
device personalizes its copy of the model first; what it learns stays there.
`recommend` plays that device for one user of a run directory.
"""

import dataclasses

import numpy as np

from tff_common import checks
from tff_common import errors
from tff_common import progress
from tff_common import run_dir as run_dir_lib
from tff_rec import config as config_lib
from tff_rec import data as data_lib
from tff_rec import params as params_lib
from tff_rec import personalization
from tff_rec import ranking
from tff_rec import reconstruction
from tff_rec import split as split_lib


@dataclasses.dataclass
class Recommendation:
  item_index: int
  item_id: int
  title: str
  predicted_rating: float


def top_n(params: params_lib.MFParams, items: np.ndarray, ratings: np.ndarray, *,
          n: int, recon: reconstruction.ReconConfig, user: int = 0,
          personalize: str = personalization.NONE,
          config: personalization.PersonalizeConfig = personalization.DEFAULT
          ) -> tuple[np.ndarray, np.ndarray]:
  """The n items the user has not rated that the model ranks first, and their
  predicted ratings.

  The device rebuilds its parameters from its ratings (and, for a model with
  the implicit head, unrated items it samples itself, seeded by `user`), and
  personalizes them by `personalize` (`config` its settings); items are ranked
  by `MFParams.ranking_scores` (of its personalized copy).
  """
  examples = recon.examples(params.num_items, user, items, ratings)
  device = personalization.device_models(personalize, params, [examples], recon=recon,
                                         config=config, users=[user])
  best = ranking.top_k(device.ranking_scores(0), n, exclude=np.asarray(items, np.int64))
  predicted = device.scores(0, best)
  return best, np.clip(predicted, data_lib.MIN_RATING, data_lib.MAX_RATING)


def user_ratings(split: split_lib.Split, user: int) -> tuple[np.ndarray, np.ndarray]:
  """All of a user's ratings of vocabulary items (train and test: the device has both)."""
  items, ratings = [], []
  for part in (split.train, split.test, split.heldout_train, split.heldout_test):
    try:
      k = part.position(user)
    except KeyError:
      continue
    items.append(part.items_of(k))
    ratings.append(part.ratings_of(k))
  if not items:
    raise errors.InputError(f'--user={user}: this user has no ratings of known items in the '
                            'data this model was trained on')
  return np.concatenate(items), np.concatenate(ratings)


def recommend(output_dir: str, *, user: int, n: int = 10, algorithm: str = 'fedrecon',
              split: split_lib.Split = None,
              personalize: personalization.PersonalizeConfig = personalization.DEFAULT,
              log=progress.print_flushed) -> tuple[list[Recommendation], int, str]:
  """Top-n for `user` with the model trained in `output_dir`, personalized on the
  device by the one method of `personalize` if it names one; also returns their
  rating count and what the list is ranked by."""
  checks.at_least('n', n, 1)
  checks.one_of('algorithm', algorithm, config_lib.ALGORITHMS)
  personalize.check()
  if len(personalize.personalize) > 1:
    checks.fail('personalize', ','.join(personalize.personalize),
                f'{personalization.NONE} or one of {", ".join(personalization.METHODS)}')
  method = personalize.personalize[0] if personalize.personalize else personalization.NONE
  root = run_dir_lib.RunDir(output_dir)
  arrays, _ = root.child(algorithm).load_model(
      missing_hint=f'train with --algorithm={algorithm} first')
  params = params_lib.from_arrays(arrays)
  config = config_lib.read_train_config(root, algorithm)
  if split is None:
    split = split_lib.load_and_split(config_lib.read_data_config(root), log=log)
  config_lib.check_data(root, split)
  items, ratings = user_ratings(split, user)
  best, predicted = top_n(params, items, ratings, n=n, recon=config.recon(), user=user,
                          personalize=method, config=personalize)
  ranked_by = ('how likely the user is to pick each movie (the implicit head)'
               if params.implicit else 'predicted rating')
  if method != personalization.NONE:
    ranked_by += f', personalized on the device ({method})'
  return [Recommendation(int(i), int(split.item_ids[i]), split.title(int(i)), float(r))
          for i, r in zip(best, predicted)], len(items), ranked_by


def format_table(recommendations: list[Recommendation], *, user: int, rated: int,
                 algorithm: str, ranked_by: str) -> str:
  """A heading, then one line per movie: rank, predicted rating (the rating head), title."""
  if not recommendations:
    return (f'user {user}: has rated all {rated} movies of the vocabulary ({algorithm}); '
            'there is nothing left to recommend')
  lines = [f'user {user}: factors rebuilt on the device from {rated} own ratings; '
           f'top {len(recommendations)} unrated movies ({algorithm}), ranked by {ranked_by}:',
           f'{"#":>3}  {"predicted":>9}  title']
  for rank, rec in enumerate(recommendations, start=1):
    lines.append(f'{rank:>3}  {rec.predicted_rating:>9.2f}  {rec.title} (id {rec.item_id})')
  return '\n'.join(lines)

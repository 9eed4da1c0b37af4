"""What a curious server learns from FedRecon updates (issue 11, recommendation part).

Ratings never leave the device, but the item-parameter delta a client sends
(`algorithms.build_fed_recon`) is a function of them. A server that looks at
what it receives runs two attacks on it:

*   Rated-item inference. The rating head's row of an item (q_i, b_i) moves only
    if the user rated it: `model.RatingLoss` masks unrated examples and charges
    the L2 penalty per rating, so every other row's gradient is exactly zero.
    The touched rows are the rated set. The implicit head also touches the
    unrated items the device sampled (its cover), but every step moves the item
    bias c_i of a rated item up (target 1: gradient sigmoid - 1 < 0) and of a
    sampled one down (target 0), so the sign of its delta separates them.
*   Rating-value inference. The one training pass of a client moves b_i of an
    item it rated once by  delta_i = (2 lr / n) (e_i - l2 b_i),  with e_i = r_i
    minus the prediction and n the ratings of its batch, so the update gives
    each rating's residual against the device's prediction. Added to the
    released model's own guess (offset + b_i), it recovers the rating but for
    the user's own part of the prediction (`recover_ratings`).

What the server sees depends on the aggregator
(`tff_common.aggregation.server_sees_individual_updates`): one client's update
(what a one-client round of the process delivers: decoded under `compressed`,
also zeroed or clipped under `robust`), or, under secure aggregation, only the
mean of a round's cohort. There the attacker's best
strategy is to attribute everything the aggregate touched to the target (of a
cohort of c, each claimed residual scaled by c, then shrunk to the spread of
residuals the round's reported training RMSE implies). The observed update always
comes from the job's own learning process (`algorithms.build_process`) run for
one round from the released weights on exactly the clients of the view, with
the datasets the devices would build (`clients.training_data_fn`, sampled
unrated items included), so a new aggregator setting changes what the process
returns and nothing here. The attacker counts a row as touched when it stands
above the view's noise floor (zero when the view adds no noise), so the same
rule serves noisy views (quantized, differentially private).

Runs on the orchestrator, playing the server: TFF for the observed updates,
NumPy for the attacks. `run` writes `<output_dir>/attack/<setting>/` (report.md,
summary.json, attack.png) and the comparison of every setting attacked so far,
`<output_dir>/attack/report.md`; the models' own directories are not touched.
"""

import dataclasses
import math
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import NamedTuple
from typing import Optional

import numpy as np

from tff_common import aggregation
from tff_common import checks
from tff_common import errors
from tff_common import program
from tff_common import progress
from tff_common import run_dir as run_dir_lib
from tff_common import seeding
from tff_rec import algorithms
from tff_rec import clients
from tff_rec import config as config_lib
from tff_rec import data as data_lib
from tff_rec import params as params_lib
from tff_rec import split as split_lib

# The observing process's server step: with plain SGD at 1 the global weights
# move by exactly the aggregated client delta (TFF's finalizer applies
# w - lr * (initial - final)).
SERVER_LR = 1.0
# The attacker's strategies for the rated set (`claimed_items`).
RATING_HEAD = 'rating_head'
IMPLICIT_TOUCHED = 'implicit_touched'
IMPLICIT_SIGN = 'implicit_sign'
STRATEGIES = (RATING_HEAD, IMPLICIT_TOUCHED, IMPLICIT_SIGN)
STRATEGY_TEXT = {
    RATING_HEAD: 'rows the rating head moved',
    IMPLICIT_TOUCHED: 'rows the implicit head moved (rated and sampled)',
    IMPLICIT_SIGN: 'implicit rows whose item bias went up',
}
GUESSES = ('attack', 'global_mean', 'model_only')
ATTACK_DIR = 'attack'
FIGURE = 'attack.png'
# Median |x| / 0.6745 estimates a Gaussian noise's standard deviation.
_MAD_TO_SIGMA = 0.6745
# A value shared by this share of a tensor's values is a level of its noise.
_COMMON_LEVEL = 0.005
# The clients' training RMSE in the learning process's metrics (flattened).
_TRAINING_RMSE = 'client_work/train/rmse'
# Seeds the choice of target users and cohort fillers: [seed, _TAG, round].
_TAG = 4099


@dataclasses.dataclass(frozen=True)
class AttackConfig:
  """Whom the server attacks, and the cohorts of the aggregate views.

  Attributes:
    users: Target users, sampled from the training users; None: the
      participants of one round, sampled as training samples them.
    cohort: Cohort sizes of the aggregate views (used when the aggregator
      shows the server only a cohort's aggregate).
  """
  users: Optional[int] = None
  cohort: tuple[int, ...] = (10, 50)

  def check(self):
    checks.optional_at_least('users', self.users, 1)
    if not self.cohort:
      checks.fail('cohort', '', 'at least one cohort size')
    for size in self.cohort:
      checks.at_least('cohort', size, 2)


def views(aggregator: aggregation.AggregatorConfig, cohorts: Sequence[int]) -> list[int]:
  """The cohort size of each view the server has under `aggregator`: 1 (one
  client's update) when it sees individual updates, else each of `cohorts`."""
  if aggregation.server_sees_individual_updates(aggregator):
    return [1]
  return sorted(set(int(c) for c in cohorts))


def view_name(cohort: int) -> str:
  return 'one client' if cohort == 1 else f'cohort of {cohort}'


def setting_name(aggregator: aggregation.AggregatorConfig) -> str:
  """A directory name for `aggregator`: its name and every option off its default."""
  default = aggregation.AggregatorConfig()
  options = [f'{f.name}={getattr(aggregator, f.name)}'
             for f in dataclasses.fields(aggregation.AggregatorConfig)
             if f.name != 'aggregator' and getattr(aggregator, f.name) != getattr(default, f.name)]
  return '-'.join([aggregator.aggregator] + options)


# What the server receives.

class Observation(NamedTuple):
  """What the server receives in one round of the view's clients."""
  update: params_lib.MFParams   # the aggregated client deltas (one client: its update)
  rmse: Optional[float]         # the clients' training RMSE, which the process reports


Observer = Callable[[Sequence[str], int], Observation]


def build_observer(split: split_lib.Split, config: config_lib.TrainConfig,
                   params: params_lib.MFParams, *,
                   aggregator: aggregation.AggregatorConfig) -> Observer:
  """`observe(client_ids, round_num) -> Observation`: what the server receives in one round.

  Builds the job's learning process with `config`'s model and client
  settings, the aggregator `aggregator` and a server SGD step of `SERVER_LR`,
  with the released weights `params` set. `observe` runs one round of its

    next: (<state=S@SERVER, client_data={B*}@CLIENTS> -> <state=S@SERVER, ...>)

  on the datasets the devices `client_ids` would build in round `round_num`
  (`clients.training_data_fn`: their train ratings and the unrated items
  they sample), and returns (new weights - old weights) / SERVER_LR as
  `MFParams` of deltas: the aggregate of the clients' updates (one client:
  its update) as the aggregator delivered it to the server; and the round's
  training RMSE from the process's metrics (None if it reports none). Every
  call starts from the same state (the aggregator's too).

  A model trained with user-level DP (`config.dp_enabled`) is observed as its
  server sees it: the clients' clipped updates, before the server adds its own
  noise (central DP protects the released model, not the updates from the
  server), averaged over the view's clients (the DP mean divides by the
  expected cohort; the observation is rescaled to the view's).
  """
  # TFF only here: the attacks themselves are NumPy.
  import tensorflow_federated as tff

  observing = dataclasses.replace(
      config, server_lr=SERVER_LR,
      **{f.name: getattr(aggregator, f.name)
         for f in dataclasses.fields(aggregation.AggregatorConfig)})
  # Under DP: the noise multiplier 0, i.e. the server's view before its noise.
  process, layers = algorithms.build_process(split, observing, noise_multiplier=0.0)
  expected_cohort = min(observing.clients_per_round or len(split.train), len(split.train))
  weights = params_lib.global_weights(params)
  state = process.set_model_weights(process.initialize(), tff.learning.models.ModelWeights(
      trainable=list(weights), non_trainable=[]))
  before = [np.asarray(w, np.float32) for w in algorithms.trainable_weights(process, state)]
  client_data_fn = clients.training_data_fn(
      split.train, batch_size=config.examples_per_batch(), seed=config.seed,
      num_items=split.num_items, negatives_per_rating=config.negatives())

  def observe(client_ids: Sequence[str], round_num: int) -> Observation:
    output = process.next(state, client_data_fn(list(client_ids), round_num))
    after = algorithms.trainable_weights(process, output.state)
    deltas = [(np.asarray(a, np.float32) - b) / SERVER_LR for a, b in zip(after, before)]
    if observing.dp_enabled:
      deltas = [d * expected_cohort / len(client_ids) for d in deltas]
    metrics = program.flatten_metrics(output.metrics)
    rmse = metrics.get(_TRAINING_RMSE)
    return Observation(params_lib.from_weights(deltas, layers, l2=0.0),
                       rmse if rmse is not None and math.isfinite(rmse) else None)

  return observe


# Rated-item inference.

def touched(*tensors: np.ndarray) -> np.ndarray:
  """Which rows (items) of the item tensors `tensors` the update moved.

  A row counts when one of its values stands above its tensor's noise floor
  (`noise_floor`; tensors are encoded and noised separately, e.g. each
  quantized between its own min and max).
  """
  rows = None
  for tensor in tensors:
    values = np.abs(np.reshape(tensor, (len(tensor), -1)))
    moved = (values > noise_floor(values)).any(axis=1)
    rows = moved if rows is None else rows | moved
  return rows


def noise_floor(values: np.ndarray) -> float:
  """The largest |value| of a [rows, ...] tensor that the view's noise alone explains.

  An exactly-zero row means no noise (an untouched row's gradient is exactly
  zero): 0. Otherwise the larger of two floors, most rows being untouched:
  Gaussian noise (differential privacy): the universal threshold
  sigma sqrt(2 ln N) of Donoho and Johnstone over the N values, sigma from
  their median; bounded noise on a few levels (quantization: an untouched
  value becomes one of the levels next to 0): the largest value that at
  least `_COMMON_LEVEL` of the values share to 3 significant digits (the
  float32 arithmetic of applying the update blurs a level a little).
  """
  values = np.abs(np.reshape(values, (len(values), -1)))
  if not values.size or not values.any(axis=1).all():
    return 0.0
  flat = values.ravel()
  gaussian = np.median(flat) / _MAD_TO_SIGMA * math.sqrt(2 * math.log(flat.size))
  nonzero = flat[flat > 0]
  exponent = np.floor(np.log10(nonzero))
  level = np.round(nonzero / 10.0 ** exponent, 2) * 10.0 ** exponent
  _, inverse, counts = np.unique(level, return_inverse=True, return_counts=True)
  common = counts[inverse] >= _COMMON_LEVEL * flat.size
  levels = float(nonzero[common].max()) if common.any() else 0.0
  return max(float(gaussian), levels)


def claimed_items(update: params_lib.MFParams) -> dict[str, np.ndarray]:
  """The items each strategy says the user rated (sorted indices)."""
  claims = {RATING_HEAD: np.flatnonzero(touched(update.item_factors, update.item_bias))}
  if update.implicit:
    rows = touched(update.implicit_item_factors, update.implicit_item_bias)
    claims[IMPLICIT_TOUCHED] = np.flatnonzero(rows)
    claims[IMPLICIT_SIGN] = np.flatnonzero(rows & (update.implicit_item_bias > 0))
  return claims


def set_scores(claimed: np.ndarray, true: np.ndarray) -> tuple[float, float, float]:
  """(precision, recall, F1) of a claimed item set; an empty claim scores 0."""
  hits = len(np.intersect1d(claimed, true))
  precision = hits / len(claimed) if len(claimed) else 0.0
  recall = hits / len(true) if len(true) else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return precision, recall, f1


# Rating-value inference.

def ratings_per_batch(ratings: int, config: config_lib.TrainConfig) -> float:
  """The ratings in the client batch of one of a user's `ratings` ratings, as
  the server expects it: a batch holds `examples_per_batch` examples, ratings
  and sampled items mixed, so about `batch_size` ratings; all of them when the
  user has fewer. (Its own batch's count is the device's secret: the error it
  leaves is part of the attack's.)"""
  return float(min(ratings, config.examples_per_batch() / (1 + config.negatives())))


def recover_ratings(params: params_lib.MFParams, observations: Sequence[Observation],
                    claims: Sequence[np.ndarray], *, config: config_lib.TrainConfig,
                    attribution: int = 1) -> list[np.ndarray]:
  """The server's guess of each user's ratings of its claimed items.

  The rating head's item-bias delta of a rated item is (2 lr / n) (e_i - l2 b_i),
  e_i the residual of the rating against the client's prediction, so
  x_i = delta n / (2 lr) + l2 b_i estimates e_i; the guess is the model-only
  one (offset + b_i) plus x_i. In a cohort's aggregate other users'
  residuals mix in: there x_i is shrunk by beta = min(1, rmse^2 / mean x^2),
  the least-squares factor of a residual observed with noise, with the
  cohort's training RMSE the process reports. (Not for one client's update:
  its residual is what the user's own part of the prediction would correct,
  and shrinking it costs more than the noise of n saves.)
  What the residual leaves out is the user's own part of the prediction
  (b_u + <p_u, q_i>), which the device fits to the same ratings: it is not
  identifiable from residuals (a user who rated everything one star higher
  leaves the same ones), and solving for it (the reconstruction's fixed point)
  amplifies the residuals' errors by about 1 / l2: it is what remains of the
  attack's error.

  Args:
    params: The released model (the weights the clients started from).
    observations: What the server saw of each user (one client's update, or
      its cohort's mean).
    claims: The items the server attributes to each user (`RATING_HEAD`).
    config: The training settings (client step, batch size, L2): the server
      chose them.
    attribution: 1 for one client's update; c when the updates are means over
      a cohort of c, each item's share of the mean then being taken as the
      user's (an average member of the cohort).

  Returns:
    Per user, guesses on the rating scale, in the order of its claimed items.
  """
  guesses = []
  for observation, items in zip(observations, claims):
    n = ratings_per_batch(max(1, int(round(len(items) / attribution))), config)
    residuals = (observation.update.item_bias[items] * attribution * n / (2 * config.client_lr)
                 + config.l2 * params.item_bias[items])
    spread = float(np.mean(residuals ** 2)) if len(items) else 0.0
    beta = 1.0
    if attribution > 1 and observation.rmse is not None and spread > 0:
      beta = min(1.0, observation.rmse ** 2 / spread)
    guesses.append(_clip(params.offset + params.item_bias[items] + beta * residuals))
  return guesses


def _clip(ratings: np.ndarray) -> np.ndarray:
  return np.clip(ratings, data_lib.MIN_RATING, data_lib.MAX_RATING)


# One view.

@dataclasses.dataclass
class ViewResult:
  """Both attacks on one view, per target user."""
  cohort: int                      # 1: one client's update
  users: list[str]                 # target client ids
  scores: dict[str, np.ndarray]    # strategy -> [users, 3]: precision, recall, F1
  claimed: dict[str, np.ndarray]   # strategy -> [users]: items claimed
  rated: np.ndarray                # [users]: items each user rated (train ratings)
  ratings: dict[str, np.ndarray]   # 'true' and each of GUESSES, over every target's ratings


def cohorts_of(targets: Sequence[str], size: int, population: Sequence[str],
               rng: np.random.Generator) -> list[list[str]]:
  """The targets in shuffled groups of `size` (a round's cohorts under secure
  aggregation); a short last group is filled with other users, non-targets
  first. `size` 1 is one group per target."""
  order = [targets[i] for i in rng.permutation(len(targets))]
  groups = [order[i:i + size] for i in range(0, len(order), size)]
  if groups and len(groups[-1]) < size:
    last, chosen = groups[-1], set(targets)
    others = [u for u in population if u not in chosen]
    spare = [u for u in order if u not in set(last)]
    fillers = ([others[i] for i in rng.permutation(len(others))] +
               [spare[i] for i in rng.permutation(len(spare))])
    groups[-1] = last + fillers[:size - len(last)]
  return groups


def attack_view(observe: Observer, params: params_lib.MFParams, split: split_lib.Split,
                config: config_lib.TrainConfig, *, targets: Sequence[str], cohort: int,
                round_num: int, log=progress.print_flushed) -> ViewResult:
  """Both attacks on each target, from its own update (`cohort` 1) or from its
  cohort's aggregate (`cohort` > 1, the other members drawn as `cohorts_of`)."""
  rng = np.random.default_rng([config.seed, _TAG, round_num, cohort])
  groups = cohorts_of(list(targets), cohort, clients.client_ids(split.train), rng)
  wanted = set(targets)
  users, observations, rated = [], [], []
  for number, group in enumerate(groups):
    observation = observe(group, round_num)
    for user in group:
      if user in wanted and user not in users:
        users.append(user)
        observations.append(observation)
        rated.append(np.unique(split.train.items_of(split.train.position(int(user)))))
    if (number + 1) % 10 == 0 or number + 1 == len(groups):
      log(f'  {view_name(cohort)}: {number + 1}/{len(groups)} rounds observed')
  claims = [claimed_items(o.update) for o in observations]
  strategies = [s for s in STRATEGIES if s in claims[0]] if claims else []
  scores = {s: np.array([set_scores(c[s], r) for c, r in zip(claims, rated)]).reshape(-1, 3)
            for s in strategies}
  claimed = {s: np.array([len(c[s]) for c in claims]) for s in strategies}
  guesses = recover_ratings(params, observations, [c[RATING_HEAD] for c in claims],
                            config=config, attribution=cohort)
  ratings = {k: [] for k in ('true',) + GUESSES}
  global_mean = split.global_mean()
  for user, claim, guess in zip(users, claims, guesses):
    k = split.train.position(int(user))
    items, true = split.train.items_of(k), split.train.ratings_of(k)
    model_only = _clip(params.offset + params.item_bias[items])
    # Items the attacker missed keep the model-only guess.
    found = dict(zip(claim[RATING_HEAD].tolist(), guess.tolist()))
    ratings['true'].append(true)
    ratings['attack'].append(np.array([found.get(int(i), m) for i, m in zip(items, model_only)]))
    ratings['global_mean'].append(np.full(len(items), global_mean))
    ratings['model_only'].append(model_only)
  return ViewResult(cohort=cohort, users=users, scores=scores, claimed=claimed,
                    rated=np.array([len(r) for r in rated]),
                    ratings={k: np.concatenate(v) if v else np.zeros(0)
                             for k, v in ratings.items()})


def target_users(split: split_lib.Split, config: config_lib.TrainConfig, *,
                 users: Optional[int], round_num: int) -> list[str]:
  """The attacked users: round `round_num`'s participants as training samples
  them, or `users` training users drawn at random (all when there are fewer)."""
  ids = clients.client_ids(split.train)
  if users is None:
    return program.sample_clients(ids, clients_per_round=config.clients_per_round,
                                  seed=config.seed, round_num=round_num,
                                  sampling=config.client_sampling)
  rng = np.random.default_rng([config.seed, _TAG, round_num])
  return sorted(ids[i] for i in rng.choice(len(ids), size=min(users, len(ids)), replace=False))


# Results.

def _rmse(a: np.ndarray, b: np.ndarray) -> Optional[float]:
  return float(np.sqrt(np.mean((a - b) ** 2))) if len(a) else None


def view_summary(result: ViewResult) -> dict:
  """Averages over the view's target users, and RMSEs over all their ratings."""
  rated_items = {}
  for strategy, scores in result.scores.items():
    means = scores.mean(axis=0) if len(scores) else [None] * 3
    rated_items[strategy] = {
        'precision': _float(means[0]), 'recall': _float(means[1]), 'f1': _float(means[2]),
        'items_claimed': _float(result.claimed[strategy].mean() if len(scores) else None)}
  true = result.ratings['true']
  ratings = {f'{guess}_rmse': _rmse(result.ratings[guess], true) for guess in GUESSES}
  ratings['attack_within_half_star'] = (
      float(np.mean(np.abs(result.ratings['attack'] - true) <= 0.5)) if len(true) else None)
  ratings['ratings'] = int(len(true))
  return {'view': view_name(result.cohort), 'cohort': result.cohort,
          'users': len(result.users),
          'items_rated': _float(result.rated.mean() if len(result.rated) else None),
          'rated_items': rated_items, 'ratings': ratings}


def _float(value) -> Optional[float]:
  return None if value is None else float(value)


def _fmt(value, digits: int = 3) -> str:
  return '—' if value is None else f'{value:.{digits}f}'


def rated_items_table(summaries: Sequence[dict], *, setting: bool = False) -> str:
  head = '| setting ' if setting else ''
  lines = [f'{head}| view | attacker takes | items claimed | precision | recall | F1 |',
           '|---' * (6 + setting) + '|']
  for s in summaries:
    for strategy, row in s['rated_items'].items():
      first = f'| {s["setting"]} ' if setting else ''
      lines.append(f'{first}| {s["view"]} | {STRATEGY_TEXT[strategy]} | '
                   f'{_fmt(row["items_claimed"], 1)} | {_fmt(row["precision"])} | '
                   f'{_fmt(row["recall"])} | {_fmt(row["f1"])} |')
  return '\n'.join(lines)


def ratings_table(summaries: Sequence[dict], *, setting: bool = False) -> str:
  head = '| setting ' if setting else ''
  lines = [f'{head}| view | attack RMSE | global-mean RMSE | model-only RMSE | '
           'attack within ±0.5 star | ratings |', '|---' * (6 + setting) + '|']
  for s in summaries:
    r = s['ratings']
    first = f'| {s["setting"]} ' if setting else ''
    lines.append(f'{first}| {s["view"]} | {_fmt(r["attack_rmse"])} | '
                 f'{_fmt(r["global_mean_rmse"])} | {_fmt(r["model_only_rmse"])} | '
                 f'{_fmt(r["attack_within_half_star"])} | {r["ratings"]:,} |')
  return '\n'.join(lines)


def markdown(summary: dict) -> str:
  s = summary
  sees = ('each client\'s update' if s['individual_updates'] else
          'only the aggregate of each cohort')
  targets = (f'the {s["users"]} participants of round {s["round"]}' if s['users_flag'] is None
             else f'{s["users"]} training users drawn at random')
  implicit = ('' if s['implicit'] else ' The model has no implicit head: only the rating '
              "head's rows are attacked.")
  return f"""# Privacy attacks on FedRecon updates: {s['output_dir']}

The server releases the fedrecon model of {s['model_rounds']} rounds and runs one more round on
{targets}, under `--aggregator` setting `{s['setting']}`: it sees {sees}. The truth is each
user's train ratings (what the device trains on); every figure comes from the job's own TFF
process (`build_process`, server SGD at {SERVER_LR:g}) on the datasets the devices build.{implicit}

## Rated-item inference (means over users)

{rated_items_table(s['views'])}

* A row of the rating head moves only for an item the user rated, so its touched rows are the
  rated set. The implicit head also moves the unrated items the device sampled
  ({s['negatives_per_rating']:g} per rating), the cover; the sign of its item-bias delta
  (up for rated, down for sampled) tells them apart.
* A row counts as touched above the view's noise floor (0 when the view adds no noise).
* A cohort's aggregate: every item it touched is attributed to the target.

## Rating-value inference (RMSE over all the targets' ratings)

{ratings_table(s['views'])}

* attack: the rating head's item-bias delta gives each rating's residual against the device's
  prediction (delta = 2 lr / n (r - prediction - l2 b_i), n ratings per batch), added to the
  model-only guess; in a cohort's aggregate, scaled by the cohort size, then shrunk to the
  residual spread the round's reported training RMSE implies. It misses the user's own
  part of the prediction (bias and factors, fitted on the device to the same ratings, so not
  identifiable from the residuals). Items the attacker did not claim keep the model-only guess.
* global mean: the mean training rating. model only: offset + item bias of the released model.
"""


def figure(results: Sequence[ViewResult], run_dir: run_dir_lib.RunDir, name: str):
  """Per-user F1 by view and strategy; recovered vs true ratings of the first view."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  data, labels = [], []
  for result in results:
    for strategy, scores in result.scores.items():
      data.append(scores[:, 2])
      labels.append(f'{view_name(result.cohort)}\n{strategy}')
  if data:
    left.boxplot(data)
    left.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=30)
  left.set(ylabel='F1 per user', ylim=(-0.02, 1.02), title='Rated-item inference')
  if results:
    r = results[0].ratings
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(r['true']))
    right.scatter(r['true'] + jitter, r['model_only'], s=4, alpha=0.3, color='gray',
                  label='model only')
    right.scatter(r['true'] + jitter, r['attack'], s=4, alpha=0.4, label='attack')
    right.plot([data_lib.MIN_RATING, data_lib.MAX_RATING],
               [data_lib.MIN_RATING, data_lib.MAX_RATING], color='black', linewidth=0.8)
    right.legend(loc='upper left')
    right.set(title=f'Rating-value inference ({view_name(results[0].cohort)})')
  right.set(xlabel='true rating (jittered)', ylabel='recovered rating')
  for axis in (left, right):
    axis.grid(alpha=0.3)
  fig.tight_layout()
  run_dir.save_figure(name, fig, dpi=100)
  plt.close(fig)


def write_index(attack_root: run_dir_lib.RunDir):
  """`attack/report.md` and `summary.json`: every setting attacked so far, side by side."""
  rows = []
  for name in sorted(os.listdir(attack_root.path)):
    child = attack_root.child(name)
    if os.path.isdir(child.path) and child.exists(run_dir_lib.SUMMARY):
      summary = child.read_json(run_dir_lib.SUMMARY)
      rows += [{**v, 'setting': summary['setting']} for v in summary['views']]
  attack_root.write_json(run_dir_lib.SUMMARY, {'views': rows})
  attack_root.write_text(run_dir_lib.REPORT, f"""# Privacy attacks by aggregator setting

Each setting's report is in its subdirectory (`python -m tff_rec.attack --aggregator=...`).

## Rated-item inference

{rated_items_table(rows, setting=True)}

## Rating-value inference

{ratings_table(rows, setting=True)}
""")


def run(output_dir: str, *, aggregator: aggregation.AggregatorConfig,
        attack: Optional[AttackConfig] = None, log=progress.print_flushed) -> dict:
  """Attacks the fedrecon model of `output_dir` under `aggregator`; writes
  `<output_dir>/attack/<setting_name>/` and the index; returns the summary.

  Raises:
    errors.InputError: a bad setting, no trained fedrecon model, changed data
      (before anything is written).
  """
  attack = attack or AttackConfig()
  aggregator.check()
  attack.check()
  root = run_dir_lib.RunDir(output_dir)
  with root.lock(create=False):
    model_run = root.child('fedrecon')
    if not model_run.exists(run_dir_lib.MODEL):
      raise errors.InputError(
          f'{model_run.file(run_dir_lib.MODEL)}: not found; train first: python -m '
          f'tff_rec.train --output_dir={output_dir} (the attack needs a fedrecon model)')
    data_config = config_lib.read_data_config(root)
    config = config_lib.read_train_config(root, 'fedrecon')
    arrays, metadata = model_run.load_model()
    split = split_lib.load_and_split(data_config, log=log)
    config_lib.check_data(root, split)
    for size in attack.cohort:
      if size > len(split.train):
        checks.fail('cohort', size, f'at most {len(split.train)} (the training users)')
    params = params_lib.from_arrays(arrays)
    seeding.set_seed(config.seed)
    round_num = int(metadata.get('rounds') or config.rounds) + 1
    targets = target_users(split, config, users=attack.users, round_num=round_num)
    if not targets:
      raise errors.InputError(f'round {round_num} samples no user (--client_sampling='
                              f'{config.client_sampling}); give --users')
    observe = build_observer(split, config, params, aggregator=aggregator)
    results = []
    for cohort in views(aggregator, attack.cohort):
      log(f'attacking {len(targets)} users, {view_name(cohort)} '
          f'(aggregator {setting_name(aggregator)})')
      results.append(attack_view(observe, params, split, config, targets=targets,
                                 cohort=cohort, round_num=round_num, log=log))
    summary = {
        'output_dir': output_dir, 'setting': setting_name(aggregator),
        'aggregator': dataclasses.asdict(aggregator),
        'individual_updates': aggregation.server_sees_individual_updates(aggregator),
        'model_rounds': round_num - 1, 'round': round_num, 'users': len(targets),
        'users_flag': attack.users, 'implicit': params.implicit,
        'negatives_per_rating': config.negatives(),
        'views': [view_summary(r) for r in results]}
    report_dir = root.child(ATTACK_DIR).child(summary['setting'])
    report_dir.makedirs()
    report_dir.write_json(run_dir_lib.SUMMARY, summary)
    report_dir.write_text(run_dir_lib.REPORT, markdown(summary))
    figure(results, report_dir, FIGURE)
    write_index(root.child(ATTACK_DIR))
    log(f'attack report: {report_dir.file(run_dir_lib.REPORT)}')
  return summary

"""What a curious server learns from the banks' model updates (issue 11, credit part).

The server broadcasts the scorecard, so it knows the weights W; a bank sends
back an update computed from its customers' rows. Three attacks on it:

*   Exact record recovery (FedSGD, a round gradient from one customer). For a
    first dense layer with bias, the gradient of one row's loss is
    dL/dW1[:, j] = x * d_j and dL/db1[j] = d_j, so x = dL/dW1[:, j] / dL/db1[j]
    for any unit j the row reached (logistic regression: x = grad w / grad b).
    The label follows from the sign of the output bias's gradient, p - y
    (negative for a bad customer, y = 1). Decoded through the schema
    (inverse standardization, missing indicators, argmax of each one-hot
    block) the bank's customer record comes back in the raw table's values.
*   Gradient inversion (DLG, Zhu et al. 2019) of a batch's FedSGD gradient or
    of a FedAvg delta after several local SGD steps: dummy records and soft
    labels are optimized (L-BFGS-B, from random starts) until the update the
    dummies would produce, with the local training unrolled differentiably,
    matches the observed one (L2 or cosine, Geiping et al. 2020). Scored by the
    distance of each real row to its recovered row (one-to-one assignment).
*   Label inference. For both models the output bias's gradient is
    mean(p) - mean(y) over the batch, so the share of bad customers is the
    model's mean prediction (estimated on public rows of the same population:
    here the banks' pooled test rows) minus it; rounded to a count and kept
    consistent with its sign (a negative gradient means at least one bad row).

What the server sees depends on the aggregator
(`tff_common.aggregation.server_sees_individual_updates`): one bank's update
as it arrives (quantized under `compressed`, before the server's own zeroing,
clipping or order statistics), or under secure aggregation only the aggregate
of the round's cohort (every bank). There each attack is applied to the
aggregate: the record formula to the mixture of the banks' customers,
inversion with a dummy batch for every bank, label inference of the cohort.

The observed updates always come from the job's own learning process
(`tff_credit.algorithms.build_process`: FedSGD, or FedAvg whose banks run
`local_steps` full-batch SGD steps at the client rate), run for one round from
the attacked weights on exactly the banks of the view, with plain server SGD
at a known rate, and read back from the weights it moved (`Observer`). So the
client code, the aggregator and its encoding are those of training.

Runs on the orchestrator, playing the server: TFF for the observed updates,
TensorFlow for the inversion's unrolled client updates, NumPy for the rest.
`run` writes report.md, summary.json and attack.png to its own run directory.
"""

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Optional

import numpy as np

from tff_common import aggregation
from tff_common import checks
from tff_common import errors
from tff_common import progress
from tff_common import run_dir as run_dir_lib
from tff_credit import algorithms
from tff_credit import config as config_lib
from tff_credit import data as data_lib
from tff_credit import federation as federation_lib
from tff_credit import model as model_lib
from tff_credit import preprocess

INDIVIDUAL = 'individual'
AGGREGATE = 'aggregate'
VIEW_TEXT = {INDIVIDUAL: "each bank's own update",
             AGGREGATE: "only the aggregate of the round's cohort (every bank)"}
# The observed update of a FedSGD round (a gradient), vs FedAvg with local steps.
FEDSGD = 0
INVERSION_LOSSES = ('l2', 'cosine')
FIGURE = 'attack.png'
# The observing process's server step: plain SGD, w <- w - SERVER_LR * update.
# The update is read back as (w_old - w_new) / SERVER_LR. A large power of two
# makes w_old negligible in the float32 difference, so the update is read to
# its own float32 precision (at 1.0, only to that of the weights' magnitude)
# and the division is exact. It acts after the aggregator, so what the banks
# send and what the aggregator delivers do not depend on it.
SERVER_LR = 2.0 ** 16
# A normalized matching loss below this: the dummies reproduce the update (to
# float32 precision); further random starts cannot do better.
_MATCHED = 1e-9
# Decimals tried for the raw table's precision of a numeric column.
_MAX_DECIMALS = 6
# Seeds of the experiments' draws: [seed, tag, ...].
_RECORD_TAG, _LABEL_TAG, _INVERSION_TAG = 7001, 7002, 7003


@dataclasses.dataclass(frozen=True)
class AttackConfig:
  """Which model is attacked and how hard.

  Attributes:
    model_dir: A `tff_credit.train` run directory: its released model, data
      settings and schema are attacked. None: the initial model of `model`
      on the data flags.
    model: The model family without `model_dir` (None: logreg).
    client_lr: The banks' SGD rate in the FedAvg rounds (None: the run's, or
      the job's default 0.1).
    weighting: The client weights of the observed rounds (None: the run's, or
      the job's default).
    seed: Seeds the attack's draws (customers, batches, banks, dummies) and,
      without `model_dir`, the data partition and the initial model.
    customers: Customers attacked by record recovery, sampled from every
      bank's training rows (0: every row); one FedSGD round each in the
      individual view, one per bank and round in the aggregate view.
    tolerance: Largest absolute error, in encoded (standardized) units, of an
      exactly recovered feature vector.
    batch_sizes: Rows per bank in the inversion and label inference rounds.
    local_steps: FedAvg local SGD steps of the inverted deltas (FedSGD's
      gradient is always inverted; empty: no FedAvg round).
    trials: Inverted rounds per (local steps, batch size).
    restarts: Random starts of the inversion, the best match kept.
    iterations: L-BFGS-B iterations per start.
    inversion_loss: How the dummies' update is matched: 'l2' (normalized
      squared distance) or 'cosine' (1 - cosine similarity; blind to scale).
    match_tolerance: A real row counts as recovered by inversion when its
      recovered row is within this root-mean-square distance per feature.
    label_trials: Label inference rounds per (bank, batch size).
  """
  model_dir: Optional[str] = None
  model: Optional[str] = None
  client_lr: Optional[float] = None
  weighting: Optional[str] = None
  seed: int = 0
  customers: int = 200
  tolerance: float = 1e-3
  batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 32)
  local_steps: tuple[int, ...] = (1, 2, 5)
  trials: int = 2
  restarts: int = 3
  iterations: int = 300
  inversion_loss: str = 'l2'
  match_tolerance: float = 0.05
  label_trials: int = 4

  def check(self):
    if self.model_dir is not None and self.model is not None:
      checks.fail('model', self.model, "no value with --model_dir (the run's model is attacked)")
    if self.model is not None:
      checks.one_of('model', self.model, config_lib.MODELS)
    if self.client_lr is not None:
      checks.positive('client_lr', self.client_lr)
    if self.weighting is not None:
      checks.one_of('weighting', self.weighting, config_lib.WEIGHTINGS)
    checks.at_least('seed', self.seed, 0)
    checks.at_least('customers', self.customers, 0)
    checks.positive('tolerance', self.tolerance)
    if not self.batch_sizes:
      checks.fail('batch_sizes', '', 'at least one integer >= 1')
    for flag, values in (('batch_sizes', self.batch_sizes), ('local_steps', self.local_steps)):
      for value in values:
        checks.at_least(flag, value, 1)
    checks.at_least('trials', self.trials, 1)
    checks.at_least('restarts', self.restarts, 1)
    checks.at_least('iterations', self.iterations, 1)
    checks.one_of('inversion_loss', self.inversion_loss, INVERSION_LOSSES)
    checks.positive('match_tolerance', self.match_tolerance)
    checks.at_least('label_trials', self.label_trials, 1)


def integers(flag: str, values: Sequence[str]) -> tuple[int, ...]:
  """The comma-separated integers of a list flag, sorted, without repeats."""
  try:
    return tuple(sorted({int(v) for v in values if v.strip()}))
  except ValueError:
    checks.fail(flag, ','.join(values), 'integers separated by commas')


def server_view(aggregator: aggregation.AggregatorConfig) -> str:
  """INDIVIDUAL when the server receives each bank's update, else AGGREGATE."""
  return INDIVIDUAL if aggregation.server_sees_individual_updates(aggregator) else AGGREGATE


# The attacked model.

@dataclasses.dataclass
class Target:
  """The model the server broadcast, and the federation it is attacked on."""
  fed: federation_lib.Federation
  model: str
  weights: list[np.ndarray]   # trainable, Keras order
  description: str            # which model, for the report
  settings: dict              # the attacked run's algorithm settings ({} without one)


def load_target(*, data: Optional[config_lib.DataConfig], attack: AttackConfig) -> Target:
  """The released model of `attack.model_dir`, on the data it was trained on and
  encoded with its own schema; or the initial model of `attack.model` on `data`.

  Raises:
    errors.InputError: the directory is not a finished `tff_credit.train` run
      (missing or unreadable files, weights of other shapes), or its data changed.
  """
  if attack.model_dir is None:
    fed = federation_lib.build_federation(data)
    model = attack.model or 'logreg'
    weights = model_lib.build_keras_model(model=model, num_features=fed.num_features,
                                          seed=attack.seed).get_weights()
    return Target(fed=fed, model=model, weights=[np.asarray(w, np.float32) for w in weights],
                  description=f'the initial `{model}` model (seed {attack.seed}), before any '
                  'training round', settings={})
  run = run_dir_lib.RunDir(attack.model_dir)
  hint = f'is --model_dir={attack.model_dir} the --output_dir of a finished tff_credit.train run?'
  if not os.path.isdir(attack.model_dir):
    raise errors.InputError(f'--model_dir={attack.model_dir}: not a directory; give the '
                            '--output_dir of a finished tff_credit.train run')
  settings = run.read_json(run_dir_lib.CONFIG, missing_hint=hint)
  try:
    data_config, algorithm, train_config, sha256 = config_lib.from_settings(settings)
    schema = preprocess.Schema.from_json(run.read_json(run_dir_lib.SCHEMA, missing_hint=hint))
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    raise errors.InputError(f'{run.file(run_dir_lib.CONFIG)}: not the settings of a '
                            f'tff_credit.train run ({type(e).__name__}: {e})') from None
  weights, metadata = model_lib.load_with_metadata(run)
  table = data_lib.load_table(
      data=data_config.data, label_column=data_config.label_column,
      positive_label=data_config.positive_label,
      categorical_columns=data_config.categorical_columns,
      drop_columns=data_config.drop_columns, bad_rows=data_config.bad_rows)
  if sha256 and config_lib.table_sha256(table) != sha256:
    raise errors.InputError(f'{table.source}: its content changed since the model in '
                            f'{attack.model_dir} was trained; attack it on the data it was trained on')
  fed = federation_lib.build_federation(data_config, table=table, schema=schema)
  expected = model_lib.build_keras_model(model=train_config.model,
                                         num_features=fed.num_features).get_weights()
  if [w.shape for w in weights] != [w.shape for w in expected]:
    raise errors.InputError(
        f'{run.file(run_dir_lib.MODEL)}: weights of shapes {[w.shape for w in weights]}, not '
        f'those of a {train_config.model} on {fed.num_features} features; {hint}')
  rounds = metadata.get('rounds', train_config.rounds)
  return Target(fed=fed, model=train_config.model,
                weights=[np.asarray(w, np.float32) for w in weights],
                description=f'the released `{train_config.model}` model of {attack.model_dir} '
                f'(`{algorithm.algorithm}`, {rounds} rounds)',
                settings={'client_lr': algorithm.client_lr, 'weighting': algorithm.weighting})


# What the server receives.

class Observer:
  """`observer(batches, local_steps=...)`: the update the server receives in one round.

  Wraps the job's learning processes (`algorithms.build_process` with
  `algorithm`'s aggregator, client rate and weighting): FedSGD for
  `local_steps=FEDSGD`, FedAvg otherwise, each with plain server SGD at
  `SERVER_LR` and the attacked weights set. A call runs one round of

    next: (<state=S@SERVER, client_data={B*}@CLIENTS> -> <state=S@SERVER, metrics=M@SERVER>)

  with one client per batch `(x, y)` of `batches` (one: the individual view;
  every bank's: the aggregate view). Under FedSGD a bank's dataset is its
  batch once (its gradient); under FedAvg the batch `local_steps` times
  (full-batch SGD steps). It returns (W_old - W_new) / SERVER_LR: what the
  aggregator delivered (TFF's updates point like gradients: a FedAvg update
  is global model - trained model). Every call starts from the same state
  (the aggregator's too), as a first round after the broadcast would.
  """

  def __init__(self, algorithm: config_lib.AlgorithmConfig, *, model: str, num_features: int,
               weights: Sequence[np.ndarray]):
    self._algorithm = dataclasses.replace(algorithm, server_lr=SERVER_LR, server_momentum=0.0)
    self._model = model
    self._num_features = num_features
    self._weights = [np.asarray(w, np.float32) for w in weights]
    self._states = {}

  def _process(self, name: str):
    if name not in self._states:
      import tensorflow_federated as tff
      process = _process(dataclasses.replace(self._algorithm, algorithm=name), self._model,
                         self._num_features)
      state = process.set_model_weights(process.initialize(), tff.learning.models.ModelWeights(
          trainable=list(self._weights), non_trainable=[]))
      before = [np.asarray(w, np.float32) for w in process.get_model_weights(state).trainable]
      self._states[name] = (process, state, before)
    return self._states[name]

  def __call__(self, batches: Sequence[tuple[np.ndarray, np.ndarray]], *,
               local_steps: int) -> list[np.ndarray]:
    import tensorflow as tf
    process, state, before = self._process('fedsgd' if local_steps == FEDSGD else 'fedavg')
    datasets = []
    for x, y in batches:
      dataset = tf.data.Dataset.from_tensor_slices((np.asarray(x, np.float32),
                                                    np.asarray(y, np.float32)[:, None]))
      if local_steps != FEDSGD:
        dataset = dataset.repeat(local_steps)
      datasets.append(dataset.batch(len(y)))
    after = process.get_model_weights(process.next(state, datasets).state).trainable
    return [(b - np.asarray(a, np.float32)) / SERVER_LR for a, b in zip(after, before)]


@functools.lru_cache(maxsize=None)
def _process(algorithm: config_lib.AlgorithmConfig, model: str, num_features: int):
  """The learning process of `algorithm`, built once per process and setting
  (building one takes seconds; its state carries the attacked weights)."""
  return algorithms.build_process(
      algorithm, model_lib.model_fn_for(model=model, num_features=num_features))


# Exact record recovery.

def recover_record(update: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
  """(features, label) of the one row whose loss gradient is `update`.

  `update` is in Keras order: the first layer's kernel [d, h] and bias [h]
  first, the output bias [1] last. The unit with the largest bias gradient is
  used (a ReLU unit the row did not reach has a zero column).
  """
  kernel, bias = np.asarray(update[0], np.float64), np.asarray(update[1], np.float64)
  unit = int(np.argmax(np.abs(bias)))
  if bias[unit] == 0:
    return np.full(kernel.shape[0], np.nan), 0
  return kernel[:, unit] / bias[unit], int(float(np.ravel(update[-1])[0]) < 0)


def feature_decimals(table: data_lib.Table) -> list[int]:
  """Per numeric column, the fewest decimals that write every value of the raw
  table (at most `_MAX_DECIMALS`): the precision a recovered value is read at."""
  decimals = []
  for j in range(len(table.numeric_columns)):
    values = table.numeric[:, j]
    values = values[~np.isnan(values)]
    for k in range(_MAX_DECIMALS + 1):
      scaled = values * 10.0 ** k
      if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled))):
        break
    decimals.append(k)
  return decimals


def decode(schema: preprocess.Schema, x: np.ndarray, decimals: Sequence[int]) -> tuple[list, list]:
  """A recovered encoded row in the raw table's values: (numeric values, NaN
  when its missing indicator is on, rounded to `decimals`; categorical values,
  the argmax of each one-hot block, None when the block is all off)."""
  numeric = []
  k = len(schema.numeric_columns)
  indicators = {c: k + i for i, c in enumerate(schema.missing_indicators)}
  for j, column in enumerate(schema.numeric_columns):
    if column in indicators and x[indicators[column]] > 0.5:
      numeric.append(math.nan)
    else:
      # (+ 0.0: a value rounded to zero reads 0, not -0)
      numeric.append(round(float(x[j] * schema.stds[j] + schema.means[j]), decimals[j]) + 0.0)
  categorical = []
  start = k + len(schema.missing_indicators)
  for column in schema.categorical_columns:
    vocabulary = schema.vocabulary[column]
    block = x[start:start + len(vocabulary)]
    start += len(vocabulary)
    categorical.append(vocabulary[int(np.argmax(block))] if np.max(block) > 0.5 else None)
  return numeric, categorical


def raw_row(table: data_lib.Table, row: int) -> tuple[list, list]:
  """The raw table's values of one row, as `decode` gives them."""
  return [float(v) for v in table.numeric[row]], list(table.categorical[row])


def raw_agreement(decoded: tuple[list, list], raw: tuple[list, list]) -> list[bool]:
  """Per column (numeric, then categorical), whether the decoded value is the
  raw table's (both missing counts as equal)."""
  numeric = [(math.isnan(a) and math.isnan(b)) or a == b
             for a, b in zip(decoded[0], raw[0], strict=True)]
  return numeric + [a == b for a, b in zip(decoded[1], raw[1], strict=True)]


def record_recovery(target: Target, observe: Observer, *, view: str, customers: int,
                    tolerance: float, seed: int) -> dict:
  """Recovers single customers' records from FedSGD rounds (`recover_record`).

  Individual view: each of `customers` customers sampled from the banks'
  training rows (0: every row) is its bank's whole batch in a round of its
  own. Aggregate view: ceil(customers / banks) rounds in each of which every
  bank sends the gradient of one customer drawn at random; the record
  formula is applied to the aggregate, and each customer of the round counts
  as recovered when the result is its record. Reported per customer: exact
  within `tolerance` in the encoded space, exact in the raw table's values
  (`decode`), the share of raw columns right, the label.
  """
  fed = target.fed
  rng = np.random.default_rng([seed, _RECORD_TAG])
  population = [(name, i) for name in fed.bank_names for i in range(len(fed.train[name][1]))]
  count = len(population) if customers == 0 else min(customers, len(population))
  if view == INDIVIDUAL:
    chosen = (range(count) if count == len(population)
              else np.sort(rng.choice(len(population), count, replace=False)))
    rounds = [[population[c]] for c in chosen]
  else:
    rounds = [[(name, int(rng.integers(len(fed.train[name][1])))) for name in fed.bank_names]
              for _ in range(math.ceil(count / len(fed.bank_names)))]
  decimals = feature_decimals(fed.table)
  table_rows = {b.name: b.train_rows for b in fed.banks}
  results = []
  for cohort in rounds:
    batches = [(fed.train[b][0][[j]], fed.train[b][1][[j]]) for b, j in cohort]
    x_hat, label = recover_record(observe(batches, local_steps=FEDSGD))
    decoded = decode(fed.schema, x_hat, decimals)
    for (name, i), (x, y) in zip(cohort, batches):
      row = int(table_rows[name][i])
      raw = raw_row(fed.table, row)
      agreement = raw_agreement(decoded, raw)
      max_error = float(np.max(np.abs(x_hat - x[0])))
      results.append({
          'bank': name, 'customer': row, 'cohort': len(cohort),
          'max_error': max_error if math.isfinite(max_error) else math.inf,
          'exact': bool(max_error <= tolerance), 'raw_exact': all(agreement),
          'raw_columns': float(np.mean(agreement)),
          'label': label, 'true_label': int(y[0]), 'decoded': decoded, 'raw': raw})
  return _record_summary(results, fed.bank_names, view=view, tolerance=tolerance,
                         rounds=len(rounds))


def _record_summary(results: list[dict], bank_names: Sequence[str], *, view: str,
                    tolerance: float, rounds: int) -> dict:
  def rates(items):
    if not items:
      return {'customers': 0}
    max_errors = np.array([r['max_error'] for r in items])
    return {'customers': len(items),
            'exact_rate': float(np.mean([r['exact'] for r in items])),
            'raw_exact_rate': float(np.mean([r['raw_exact'] for r in items])),
            'raw_columns_rate': float(np.mean([r['raw_columns'] for r in items])),
            'label_accuracy': float(np.mean([r['label'] == r['true_label'] for r in items])),
            'median_max_error': float(np.median(max_errors)),
            'worst_max_error': float(np.max(max_errors))}

  # The best recovered customer, and the worst when not every one is exact.
  ranked = sorted(results, key=lambda r: r['max_error'])
  examples = ranked[:1] + ([ranked[-1]] if not ranked[-1]['exact'] else [])
  return {'view': view, 'tolerance': tolerance, 'rounds': rounds, 'all': rates(results),
          'banks': {name: rates([r for r in results if r['bank'] == name]) for name in bank_names},
          'examples': [{k: r[k] for k in ('bank', 'customer', 'cohort', 'max_error', 'exact',
                                          'raw_exact', 'label', 'true_label', 'decoded', 'raw')}
                       for r in examples]}


# Label inference.

def positive_count(output_bias_update: float, *, mean_prediction: float, rows: int) -> int:
  """The number of bad rows (y = 1) of a batch of `rows` from the gradient of
  the output bias, mean(p) - mean(y): rows * (mean prediction - gradient),
  rounded, and at least one when the gradient is negative (mean(y) > mean(p)
  > 0), at most rows - 1 when it is positive."""
  count = round(rows * (mean_prediction - output_bias_update))
  low = 1 if output_bias_update < 0 else 0
  high = rows - 1 if output_bias_update > 0 else rows
  return int(min(max(count, low), high))


def label_inference(target: Target, observe: Observer, *, view: str, batch_sizes: Sequence[int],
                    trials: int, mean_prediction: float, seed: int) -> dict:
  """Estimated share of bad customers in FedSGD batches, against the truth.

  Individual view: per bank and batch size, `trials` batches of that bank.
  Aggregate view: per batch size, `trials` rounds in which every bank with
  enough rows sends a batch; the share of the cohort is estimated.
  """
  fed = target.fed
  rng = np.random.default_rng([seed, _LABEL_TAG])
  rows = {}
  skipped = []
  groups = ([[name] for name in fed.bank_names] if view == INDIVIDUAL else [fed.bank_names])
  for size in batch_sizes:
    for group in groups:
      eligible = [name for name in group if len(fed.train[name][1]) >= size]
      skipped += [f'{name} (batch {size}: {len(fed.train[name][1])} rows)'
                  for name in group if name not in eligible]
      if not eligible:
        continue
      key = eligible[0] if view == INDIVIDUAL else 'cohort'
      errors_, exact = [], []
      for _ in range(trials):
        batches = [_sample(fed.train[name], size, rng) for name in eligible]
        update = observe(batches, local_steps=FEDSGD)
        n = len(eligible) * size
        estimate = positive_count(float(np.ravel(update[-1])[0]), mean_prediction=mean_prediction,
                                  rows=n)
        truth = int(sum(int(y.sum()) for _, y in batches))
        errors_.append(abs(estimate - truth) / n)
        exact.append(estimate == truth)
      rows.setdefault(key, {})[str(size)] = {
          'mean_abs_error': float(np.mean(errors_)), 'exact_rate': float(np.mean(exact)),
          'banks': len(eligible), 'trials': trials}
  return {'view': view, 'mean_prediction': mean_prediction, 'rows': rows, 'skipped': skipped}


def _sample(part: tuple[np.ndarray, np.ndarray], size: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  x, y = part
  rows = np.sort(rng.choice(len(y), size, replace=False))
  return x[rows], y[rows]


# Gradient inversion.

def feature_bounds(schema: preprocess.Schema) -> list[tuple[Optional[float], Optional[float]]]:
  """What the data dictionary tells the attacker: indicators and one-hot
  features lie in [0, 1]; standardized numeric features are unbounded."""
  numeric = len(schema.numeric_columns)
  return [(None, None)] * numeric + [(0.0, 1.0)] * (len(schema.feature_names) - numeric)


def _logits(weights, x):
  """The scorecard's logits for dummy batches x [K, B, d] under per-bank
  weights (each [K, ...], Keras order: kernel, bias per dense layer; ReLU
  between layers, as `model_lib.build_keras_model`)."""
  import tensorflow as tf
  h = x
  layers = len(weights) // 2
  for i in range(layers):
    h = tf.einsum('kbi,kio->kbo', h, weights[2 * i]) + weights[2 * i + 1][:, None, :]
    if i < layers - 1:
      h = tf.nn.relu(h)
  return h[..., 0]


def simulated_update(weights, x, y, *, local_steps: int, client_lr: float):
  """The aggregate the dummies x [K, B, d], y [K, B] would produce: the mean
  over the K banks of each bank's update (a FedSGD gradient of its mean binary
  cross-entropy, or its FedAvg delta after `local_steps` full-batch SGD
  steps), differentiable with respect to x and y. Banks of equal batches
  weigh the same under either weighting."""
  import tensorflow as tf

  def loss(w):
    # Keras' binary cross-entropy on a sigmoid output is computed from its logits.
    per_row = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=_logits(w, x))
    return tf.reduce_sum(tf.reduce_mean(per_row, axis=1))  # each bank's own gradient

  groups = tf.shape(x)[0]
  start = [tf.broadcast_to(w, tf.concat([[groups], tf.shape(w)], 0)) for w in weights]
  current = start
  for _ in range(max(local_steps, 1)):
    with tf.GradientTape() as tape:
      tape.watch(current)
      value = loss(current)
    gradients = tape.gradient(value, current)
    if local_steps == FEDSGD:
      return [tf.reduce_mean(g, axis=0) for g in gradients]
    current = [w - client_lr * g for w, g in zip(current, gradients)]
  return [tf.reduce_mean(a - b, axis=0) for a, b in zip(start, current)]


@functools.lru_cache(maxsize=None)
def _objective(local_steps: int, client_lr: float, loss: str):
  """A tf.function (x, y, weights, observed) -> (matching loss, d/dx, d/dy)."""
  import tensorflow as tf

  @tf.function
  def objective(x, y, weights, observed):
    with tf.GradientTape() as tape:
      tape.watch([x, y])
      update = simulated_update(weights, x, y, local_steps=local_steps, client_lr=client_lr)
      a = tf.concat([tf.reshape(u, [-1]) for u in update], 0)
      b = tf.concat([tf.reshape(o, [-1]) for o in observed], 0)
      if loss == 'l2':
        value = tf.reduce_sum(tf.square(a - b)) / tf.reduce_sum(tf.square(b))
      else:
        value = 1.0 - tf.reduce_sum(a * b) / (tf.norm(a) * tf.norm(b) + 1e-30)
    dx, dy = tape.gradient(value, [x, y])
    return value, dx, dy

  return objective


@dataclasses.dataclass
class Inversion:
  x: np.ndarray       # [K * B, d] recovered rows
  y: np.ndarray       # [K * B] soft labels in [0, 1]
  loss: float         # the best start's matching loss


def invert(update: Sequence[np.ndarray], *, weights: Sequence[np.ndarray], groups: int, rows: int,
           local_steps: int, client_lr: float, bounds, positives: int, loss: str = 'l2',
           restarts: int = 3, iterations: int = 300, seed: int = 0) -> Inversion:
  """Dummy rows whose update matches `update` (DLG with L-BFGS-B).

  `groups` banks of `rows` dummies each; the features are kept within
  `bounds` (`feature_bounds`), the soft labels within [0, 1], and each start
  draws its features at random and puts label 1 on `positives` random
  dummies (label inference's estimate: a dummy whose label has the wrong sign
  of p - y would have to cross p = y, where its gradient vanishes). The start
  with the lowest matching loss is kept; once one matches, no further start.
  """
  import scipy.optimize
  import tensorflow as tf

  d = len(bounds)
  n = groups * rows
  objective = _objective(int(local_steps), float(client_lr), loss)
  weights_t = [tf.constant(w, tf.float64) for w in weights]
  observed_t = [tf.constant(u, tf.float64) for u in update]
  numeric = np.array([lo is None for lo, _ in bounds])
  box = list(bounds) * n + [(0.0, 1.0)] * n
  rng = np.random.default_rng([seed, _INVERSION_TAG])

  def fun(v):
    x = tf.constant(v[:n * d].reshape(groups, rows, d))
    y = tf.constant(v[n * d:].reshape(groups, rows))
    value, dx, dy = objective(x, y, weights_t, observed_t)
    value = float(value)
    gradient = np.concatenate([dx.numpy().ravel(), dy.numpy().ravel()])
    if not (math.isfinite(value) and np.all(np.isfinite(gradient))):
      # Dummies driven to saturation: a wall the line search backs off from.
      return 1e30, np.zeros_like(v)
    return value, gradient

  best = None
  for _ in range(restarts):
    x0 = np.where(numeric, rng.normal(size=(n, d)), rng.random((n, d)))
    y0 = np.zeros(n)
    y0[rng.permutation(n)[:positives]] = 1.0
    result = scipy.optimize.minimize(
        fun, np.concatenate([x0.ravel(), y0]), jac=True, method='L-BFGS-B', bounds=box,
        options={'maxiter': iterations, 'ftol': 1e-16, 'gtol': 1e-14})
    if best is None or result.fun < best.loss:
      best = Inversion(x=result.x[:n * d].reshape(n, d), y=result.x[n * d:], loss=float(result.fun))
    if best.loss < _MATCHED:
      break
  return best


def match_rows(recovered: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(distance, index of the recovered row) for each real row, in the
  one-to-one assignment of least total distance (a recovered row stands for
  one real row only); distance: root mean square per feature."""
  import scipy.optimize
  distances = np.sqrt(np.mean((real[:, None, :] - recovered[None, :, :]) ** 2, axis=-1))
  rows, cols = scipy.optimize.linear_sum_assignment(distances)
  matched = np.empty(len(real))
  matched[rows] = distances[rows, cols]
  return matched, cols[np.argsort(rows)]


def inversion_study(target: Target, observe: Observer, *, view: str, batch_sizes: Sequence[int],
                    local_steps: Sequence[int], client_lr: float, attack: AttackConfig,
                    mean_prediction: float, public: np.ndarray,
                    log: Callable[[str], None] = progress.print_flushed) -> dict:
  """Inverts FedSGD gradients and FedAvg deltas of sampled batches.

  For each setting (FedSGD, then each of `local_steps`) and batch size,
  `attack.trials` rounds: one bank with enough rows (drawn at random) in the
  individual view, every such bank in the aggregate view. Reported per
  setting and size: the mean distance of the real rows to their recovered
  rows, the share within `attack.match_tolerance`, the accuracy of the
  recovered labels, and the same distance for a guess (as many rows of
  `public` drawn at random), what an attacker knows without the update.
  """
  fed = target.fed
  bounds = feature_bounds(fed.schema)
  rng = np.random.default_rng([attack.seed, _INVERSION_TAG])
  settings = [FEDSGD] + [s for s in local_steps if s != FEDSGD]
  results = {}
  skipped = []
  for steps in settings:
    key = setting_name(steps)
    for size in batch_sizes:
      eligible = [name for name in fed.bank_names if len(fed.train[name][1]) >= size]
      if not eligible:
        skipped.append(f'{key}, batch {size}: no bank has {size} training rows')
        continue
      distances, guesses, labels, losses = [], [], [], []
      for _ in range(attack.trials):
        banks = [eligible[int(rng.integers(len(eligible)))]] if view == INDIVIDUAL else eligible
        batches = [_sample(fed.train[name], size, rng) for name in banks]
        update = observe(batches, local_steps=steps)
        n = len(banks) * size
        # The output bias moves by about client_lr * steps * (mean(p) - mean(y)).
        bias_gradient = float(np.ravel(update[-1])[0]) / (client_lr * steps if steps else 1.0)
        inversion = invert(
            update, weights=target.weights, groups=len(banks), rows=size, local_steps=steps,
            client_lr=client_lr, bounds=bounds,
            positives=positive_count(bias_gradient, mean_prediction=mean_prediction, rows=n),
            loss=attack.inversion_loss, restarts=attack.restarts, iterations=attack.iterations,
            seed=int(rng.integers(2 ** 31)))
        real_x = np.concatenate([x for x, _ in batches])
        real_y = np.concatenate([y for _, y in batches])
        matched, assigned = match_rows(inversion.x, real_x)
        distances.extend(matched)
        labels.extend((inversion.y[assigned] > 0.5) == (real_y > 0.5))
        guess = public[rng.choice(len(public), n, replace=len(public) < n)]
        guesses.extend(match_rows(guess, real_x)[0])
        losses.append(inversion.loss)
      results.setdefault(key, {})[str(size)] = {
          'mean_distance': float(np.mean(distances)),
          'median_distance': float(np.median(distances)),
          'recovered_share': float(np.mean(np.array(distances) <= attack.match_tolerance)),
          'label_accuracy': float(np.mean(labels)),
          'guess_distance': float(np.mean(guesses)),
          'matching_loss': float(np.median(losses)),
          'banks_per_round': len(banks) if view == AGGREGATE else 1, 'trials': attack.trials}
      log(f'  inversion {key}, batch {size}: distance {np.mean(distances):.4f} '
          f'(guess {np.mean(guesses):.3f}), recovered {np.mean(np.array(distances) <= attack.match_tolerance):.0%}')
  return {'view': view, 'match_tolerance': attack.match_tolerance,
          'inversion_loss': attack.inversion_loss, 'client_lr': client_lr,
          'settings': results, 'skipped': skipped}


def setting_name(local_steps: int) -> str:
  return 'fedsgd' if local_steps == FEDSGD else f'fedavg_{local_steps}_steps'


def _setting_text(key: str) -> str:
  if key == 'fedsgd':
    return 'FedSGD gradient'
  steps = int(key.split('_')[1])
  return f'FedAvg delta, {steps} local step{"s" if steps > 1 else ""}'


# The binary's work.

def run(*, data: Optional[config_lib.DataConfig], aggregator: aggregation.AggregatorConfig,
        attack: AttackConfig, output_dir: str,
        log: Callable[[str], None] = progress.print_flushed) -> dict:
  """Runs the three attacks against what the server sees under `aggregator`
  and writes report.md, summary.json and attack.png to `output_dir`.

  Args:
    data: The data settings, without `attack.model_dir` (with it, None: the
      run's own are used).
    aggregator: The aggregator of the observed rounds (the defence studied).
    attack: The attacked model and the attacks' settings.
    output_dir: A directory for the report (not a training run's: its
      report would be overwritten).
  """
  attack.check()
  aggregator.check()
  if (data is None) == (attack.model_dir is None):
    raise ValueError('pass the data settings exactly when no model directory is given')
  if data is not None:
    data.check()
  out = run_dir_lib.RunDir(output_dir)
  if attack.model_dir is not None and os.path.realpath(attack.model_dir) == os.path.realpath(
      output_dir):
    checks.fail('output_dir', output_dir, 'a directory other than --model_dir (its report.md '
                'and summary.json would be overwritten)')
  if out.exists(run_dir_lib.MODEL) or out.exists(run_dir_lib.CONFIG):
    checks.fail('output_dir', output_dir, 'a directory that holds no training run (its '
                'report.md and summary.json would be overwritten)')

  target = load_target(data=data, attack=attack)
  fed = target.fed
  train_rows = sum(len(fed.train[name][1]) for name in fed.bank_names)
  if attack.customers > train_rows:
    checks.fail('customers', attack.customers, f'at most {train_rows}, the training rows of '
                'the banks (0: every one)')
  client_lr = attack.client_lr or target.settings.get('client_lr',
                                                      config_lib.AlgorithmConfig.client_lr)
  weighting = attack.weighting or target.settings.get('weighting',
                                                      config_lib.AlgorithmConfig.weighting)
  algorithm = config_lib.AlgorithmConfig(
      **{f.name: getattr(aggregator, f.name) for f in dataclasses.fields(aggregator)},
      client_lr=client_lr, weighting=weighting)
  view = server_view(aggregator)
  log(f'{fed.table.source}: {fed.num_features} features, {len(fed.banks)} banks '
      f'({", ".join(f"{name} {len(fed.train[name][1])}" for name in fed.bank_names)} training rows); '
      f'attacking {target.description}; aggregator `{aggregator.aggregator}`: the server sees '
      f'{VIEW_TEXT[view]}')
  observe = Observer(algorithm, model=target.model, num_features=fed.num_features,
                     weights=target.weights)
  public_x, _ = fed.pooled('test')
  mean_prediction = float(np.mean(model_lib.predict(model=target.model, weights=target.weights,
                                                    features=public_x)))

  log('exact record recovery (FedSGD, one customer per bank and round) ...')
  records = record_recovery(target, observe, view=view, customers=attack.customers,
                            tolerance=attack.tolerance, seed=attack.seed)
  log('label inference ...')
  labels = label_inference(target, observe, view=view, batch_sizes=attack.batch_sizes,
                           trials=attack.label_trials, mean_prediction=mean_prediction,
                           seed=attack.seed)
  log('gradient inversion ...')
  inversion = inversion_study(target, observe, view=view, batch_sizes=attack.batch_sizes,
                              local_steps=attack.local_steps, client_lr=client_lr, attack=attack,
                              mean_prediction=mean_prediction, public=public_x, log=log)
  summary = {
      'setup': {'data': fed.table.source, 'features': fed.num_features,
                'feature_names': fed.schema.feature_names,
                'banks': {name: len(fed.train[name][1]) for name in fed.bank_names},
                'partition': fed.config.partition, 'model': target.model,
                'attacked_model': target.description, 'model_dir': attack.model_dir,
                'aggregator': dataclasses.asdict(aggregator), 'view': view,
                'view_text': VIEW_TEXT[view], 'client_lr': client_lr, 'weighting': weighting,
                'seed': attack.seed},
      'record_recovery': records, 'label_inference': labels, 'inversion': inversion}
  report = render_report(summary, fed.schema)
  with out.lock():
    out.write_json(run_dir_lib.SUMMARY, _jsonable(summary))
    out.write_text(run_dir_lib.REPORT, report)
    _plot(summary, out)
  overall = records['all']
  log(f"record recovery ({view} view): {overall.get('exact_rate', 0):.1%} of "
      f"{overall['customers']} customers exact (encoded), {overall.get('raw_exact_rate', 0):.1%} "
      f"in the raw table's values, labels {overall.get('label_accuracy', 0):.1%} right")
  for key, row in labels['rows'].items():
    log(f'label inference ({key}), mean error of the share by batch size: ' + ', '.join(
        f"{size}: {cell['mean_abs_error']:.3f}" for size, cell in row.items()))
  fedsgd = inversion['settings'].get('fedsgd', {})
  if fedsgd:
    log('inversion (FedSGD), mean distance by batch size: ' + ', '.join(
        f"{size}: {row['mean_distance']:.3f}" for size, row in fedsgd.items()))
  log(f'wrote {out.file(run_dir_lib.REPORT)}, {run_dir_lib.SUMMARY}, {FIGURE}')
  return summary


def _jsonable(value):
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (np.floating, float)):
    return None if not math.isfinite(float(value)) else float(value)
  if isinstance(value, (np.integer, np.bool_)):
    return value.item()
  return value


# The report.

def _show(value) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return 'missing'
  if isinstance(value, float):
    return f'{value:g}'
  return str(value)


def _percent(value) -> str:
  return 'n/a' if value is None else f'{value:.1%}'


def _number(value, digits: int = 4) -> str:
  return 'n/a' if value is None else f'{value:.{digits}g}'


def render_report(summary: dict, schema: preprocess.Schema) -> str:
  setup = summary['setup']
  records = summary['record_recovery']
  overall = records['all']
  view = setup['view']
  lines = [
      '# What a curious server recovers from the banks\' updates', '',
      f"Attacked: {setup['attacked_model']}. Data: {setup['data']} ({setup['features']} "
      f"encoded features), {len(setup['banks'])} banks (`{setup['partition']}`). Aggregator "
      f"`{setup['aggregator']['aggregator']}`: **the server sees {setup['view_text']}**. "
      f"Observed rounds: the job's own process, FedSGD and FedAvg (client rate "
      f"{setup['client_lr']:g}, weighting `{setup['weighting']}`).", '']
  if setup['aggregator']['aggregator'] == 'robust':
    lines += ['Under `robust` each update arrives clipped to the norm bound the server set, or zeroed '
              '(TFF applies both on the bank): the record formula and the cosine matching are blind '
              'to that scale, label inference is not.', '']
  lines += [
      '## Exact record recovery (FedSGD, a round gradient from a single customer)', '']
  if view == INDIVIDUAL:
    lines.append('Each sampled customer is a bank\'s whole batch in a round of its own; the record '
                 'is grad W1[:, j] / grad b1[j] and the label the sign of the output bias\'s gradient.')
  else:
    lines.append(f"{records['rounds']} rounds in each of which every bank sends one customer's "
                 'gradient; the record formula is applied to the aggregate, and a customer counts '
                 'as recovered when the result is its record.')
  lines += ['', f"**{_percent(overall.get('exact_rate'))} of {overall['customers']} customers "
            f"recovered exactly** (every encoded feature within {records['tolerance']:g}), "
            f"{_percent(overall.get('raw_exact_rate'))} in the raw table's values (every column "
            f"at the table's precision; {_percent(overall.get('raw_columns_rate'))} of the columns), "
            f"labels right for {_percent(overall.get('label_accuracy'))}. Largest feature error: "
            f"median {_number(overall.get('median_max_error'))}, worst "
            f"{_number(overall.get('worst_max_error'))}.", '',
            '| bank | customers | exact (encoded) | exact (raw) | raw columns | label | '
            'median max error |', '|---|---|---|---|---|---|---|']
  for name, row in records['banks'].items():
    if row['customers']:
      lines.append(f"| {name} | {row['customers']} | {_percent(row['exact_rate'])} | "
                   f"{_percent(row['raw_exact_rate'])} | {_percent(row['raw_columns_rate'])} | "
                   f"{_percent(row['label_accuracy'])} | {_number(row['median_max_error'])} |")
  columns = schema.numeric_columns + schema.categorical_columns
  label_names = [schema.negative_label or '0', schema.positive_label or '1']
  for example in records['examples']:
    lines += ['', f"Customer {example['customer']} of {example['bank']}"
              + (f" (one of a cohort of {example['cohort']})" if example['cohort'] > 1 else '')
              + f": {'exact' if example['exact'] else 'not exact'} "
              f"(max error {_number(example['max_error'])}).", '',
              '| | ' + ' | '.join(columns) + f" | {schema.label_column or 'label'} |",
              '|---|' + '---|' * (len(columns) + 1)]
    for what, (numeric, categorical), label in (
        ('table', example['raw'], example['true_label']),
        ('recovered', example['decoded'], example['label'])):
      lines.append(f'| {what} | ' + ' | '.join(_show(v) for v in list(numeric) + list(categorical))
                   + f' | {label_names[label]} |')

  labels = summary['label_inference']
  sizes = sorted({int(s) for row in labels['rows'].values() for s in row})
  lines += ['', '## Label inference (share of bad customers in a FedSGD batch)', '',
            f"Estimate: mean prediction on public rows ({labels['mean_prediction']:.4f}) minus the "
            'output bias\'s gradient, as a count consistent with its sign. Mean absolute error of '
            'the share (exact-count rate in brackets):', '',
            '| ' + ('bank' if view == INDIVIDUAL else 'cohort') + ' | '
            + ' | '.join(f'batch {s}' for s in sizes) + ' |', '|---|' + '---|' * len(sizes)]
  for key, row in labels['rows'].items():
    cells = [f"{row[str(s)]['mean_abs_error']:.3f} ({row[str(s)]['exact_rate']:.0%})"
             if str(s) in row else 'n/a' for s in sizes]
    lines.append(f'| {key} | ' + ' | '.join(cells) + ' |')
  if labels['skipped']:
    lines += ['', 'Too few training rows for a batch: ' + '; '.join(labels['skipped']) + '.']

  inversion = summary['inversion']
  lines += ['', '## Gradient inversion (DLG: dummy rows matched to the update)', '',
            f"L-BFGS-B on the {inversion['inversion_loss']} matching loss, the banks' local "
            'training unrolled. Distance: root mean square per encoded feature between each real '
            'row and its recovered row (one-to-one); recovered: within '
            f"{inversion['match_tolerance']:g}. Guess: the same distance for random public rows.", '',
            '| update | batch | distance | recovered | labels right | guess | matching loss |',
            '|---|---|---|---|---|---|---|']
  for key, row in inversion['settings'].items():
    for size, cell in row.items():
      lines.append(f"| {_setting_text(key)} | {size}"
                   + (f" x {cell['banks_per_round']} banks" if view == AGGREGATE else '')
                   + f" | {cell['mean_distance']:.4f} | {cell['recovered_share']:.0%} | "
                   f"{cell['label_accuracy']:.0%} | {cell['guess_distance']:.3f} | "
                   f"{cell['matching_loss']:.1e} |")
  if inversion['skipped']:
    lines += ['', 'Not run: ' + '; '.join(inversion['skipped']) + '.']
  lines += ['', f'Figure: {FIGURE} (distance and share recovered against batch size, one line per '
            'update).']
  return '\n'.join(lines) + '\n'


def _plot(summary: dict, out: run_dir_lib.RunDir):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  inversion = summary['inversion']
  figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  guess = {}
  for key, row in inversion['settings'].items():
    sizes = [int(s) for s in row]
    left.plot(sizes, [row[s]['mean_distance'] for s in row], marker='o', label=_setting_text(key))
    right.plot(sizes, [row[s]['recovered_share'] for s in row], marker='o', label=_setting_text(key))
    for s in row:
      guess.setdefault(int(s), []).append(row[s]['guess_distance'])
  if guess:
    sizes = sorted(guess)
    left.plot(sizes, [np.mean(guess[s]) for s in sizes], color='grey', linestyle='--',
              label='guess (public rows)')
  for ax in (left, right):
    ax.set_xscale('log', base=2)
    ax.set_xlabel('batch size (rows per bank)')
    ax.legend(fontsize=7)
  left.set_yscale('symlog', linthresh=1e-3)
  left.set_ylim(bottom=0)
  left.set_ylabel('distance to recovered row (RMS per feature)')
  right.set_ylabel(f"share of rows within {inversion['match_tolerance']:g}")
  right.set_ylim(-0.05, 1.05)
  figure.suptitle(f"Gradient inversion, {summary['setup']['model']}: the server sees "
                  f"{summary['setup']['view_text']}", fontsize=9)
  figure.tight_layout()
  out.save_figure(FIGURE, figure, dpi=110)
  plt.close(figure)

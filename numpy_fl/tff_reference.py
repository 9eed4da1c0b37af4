"""The TFF side of the comparison: the same models and algorithms, built with TFF.

Runs on the Python orchestrator; each `next` is one federated round executed by
TFF's runtime (installed by the caller with
`tff_common.runtime.install_execution_context`). Weights cross between the two
engines as NumPy's flat vector `[kernel..., bias]`, which maps onto a Keras
`Dense(1)`'s `(kernel [d, 1], bias [1])`.

The logistic model outputs logits and uses `BinaryCrossentropy(from_logits=True)`:
the sigmoid is inside the loss, which keeps the cross-entropy exact for any
logit, as NumPy's `logaddexp` form is (a sigmoid output layer would make Keras
clip probabilities at 1e-7).
"""

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from tff_common import quiet

# Imported quietly before anything else pulls TensorFlow in with its start-up noise.
tf, tff = quiet.import_tensorflow()

from tff_common import aggregation  # pylint: disable=g-import-not-at-top,g-bad-import-order


KERAS_MODELS = ('dense', 'credit')


def model_fn_for(*, model: str, num_features: int, keras_model: str = 'dense'):
  """A no-arg `model_fn` building a fresh Keras Dense(1) wrapped for TFF.

  Args:
    model: 'linear' or 'logistic'.
    num_features: Input width.
    keras_model: 'dense', this module's Dense(1) on logits; or 'credit', the
      credit job's own scorecard model (`tff_credit.model`, logistic only: a
      sigmoid output with Keras' default cross-entropy), so the check covers
      the exact model that job trains.
  """
  if keras_model == 'credit':
    if model != 'logistic':
      raise ValueError(f"keras_model='credit' is logistic regression; got model={model!r}")
    from tff_credit import model as credit_model  # pylint: disable=g-import-not-at-top
    return credit_model.model_fn_for(model='logreg', num_features=num_features)
  if keras_model != 'dense':
    raise ValueError(f'unknown keras_model {keras_model!r}; expected one of {", ".join(KERAS_MODELS)}')
  if model not in ('linear', 'logistic'):
    raise ValueError(f'unknown model {model!r}; expected linear or logistic')
  input_spec = (tf.TensorSpec([None, num_features], tf.float32),
                tf.TensorSpec([None, 1], tf.float32))

  def model_fn():
    dense = tf.keras.Sequential([
        tf.keras.layers.InputLayer(input_shape=(num_features,)),
        tf.keras.layers.Dense(1),
    ])
    if model == 'linear':
      loss = tf.keras.losses.MeanSquaredError()
    else:
      loss = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    return tff.learning.models.from_keras_model(dense, loss=loss,
                                                input_spec=input_spec)

  return model_fn


def build_process(*, algorithm: str, model: str, num_features: int, weighting: str,
                  lr: float, server_lr: float = 1.0, server_momentum: float = 0.0,
                  aggregator: str = 'mean', keras_model: str = 'dense'):
  """TFF's FedSGD or FedAvg with the given weighting and learning rates.

  Args:
    algorithm: 'fedsgd' (server SGD at `lr` on the mean gradient) or 'fedavg'
      (client SGD at `lr`, server SGD at `server_lr`).
    weighting: 'uniform' (1/K mean) or 'num_examples'.
    aggregator: A name from `tff_common.aggregation.NAMES`.
    keras_model: See `model_fn_for`.
  """
  model_fn = model_fn_for(model=model, num_features=num_features, keras_model=keras_model)
  weighted = weighting == 'num_examples'
  momentum = server_momentum or None
  if algorithm == 'fedsgd':
    # build_fed_sgd takes only weighted factories; for the uniform mean the
    # shared factory ignores the example counts it is given.
    model_aggregator = aggregation.build_aggregator(
        aggregator, weighted=weighted, ignore_weights=not weighted)
    return tff.learning.algorithms.build_fed_sgd(
        model_fn,
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(lr, momentum=momentum),
        model_aggregator=model_aggregator)
  if algorithm == 'fedavg':
    model_aggregator = aggregation.build_aggregator(aggregator, weighted=weighted)
    common = dict(
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(lr),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(server_lr, momentum=momentum),
        model_aggregator=model_aggregator)
    if weighted:
      return tff.learning.algorithms.build_weighted_fed_avg(model_fn, **common)
    return tff.learning.algorithms.build_unweighted_fed_avg(model_fn, **common)
  raise ValueError(f'unknown algorithm {algorithm!r}; expected fedsgd or fedavg')


def client_datasets(bank_arrays: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                    batch_size: Optional[int], epochs: int = 1) -> list:
  """One unshuffled `tf.data.Dataset` per client, in the mapping's order.

  `batch_size=None` makes one full batch per epoch. Batches never cross an
  epoch boundary (`batch` before `repeat`), as NumPy's local loop does.
  """
  datasets = []
  for x, y in bank_arrays.values():
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32).reshape(-1, 1)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size or len(x))
    datasets.append(ds.repeat(epochs) if epochs > 1 else ds)
  return datasets


def to_model_weights(flat: np.ndarray):
  flat = np.asarray(flat, np.float32)
  return tff.learning.models.ModelWeights(
      trainable=[flat[:-1].reshape(-1, 1), flat[-1:]], non_trainable=[])


def from_model_weights(model_weights) -> np.ndarray:
  kernel, bias = model_weights.trainable
  return np.append(np.asarray(kernel).reshape(-1), np.asarray(bias).reshape(-1))


class Runner:
  """A TFF learning process on fixed client datasets, started at given weights."""

  def __init__(self, *, process, datasets: Sequence, initial_weights: np.ndarray):
    self._process = process
    self._datasets = list(datasets)
    state = process.initialize()
    self._state = process.set_model_weights(state, to_model_weights(initial_weights))
    self.last_metrics = None

  def next(self):
    """Runs one federated round (only `process.next`, so timing it times the round)."""
    output = self._process.next(self._state, self._datasets)
    self._state = output.state
    self.last_metrics = output.metrics

  def reported_loss(self) -> float:
    """TFF's training loss of the last round (on the model the clients received)."""
    try:
      return float(self.last_metrics['client_work']['train']['loss'])
    except (KeyError, TypeError):
      return float('nan')

  @property
  def weights(self) -> np.ndarray:
    return from_model_weights(self._process.get_model_weights(self._state))


def runner_for(config, bank_arrays: Mapping[str, tuple[np.ndarray, np.ndarray]],
               initial_weights: np.ndarray) -> Runner:
  """The TFF twin of `numpy_fl.comparison.build_numpy(config, bank_arrays)`."""
  num_features = np.asarray(next(iter(bank_arrays.values()))[0]).shape[1]
  process = build_process(
      algorithm=config.algorithm, model=config.model, num_features=num_features,
      weighting=config.weighting, lr=config.lr, server_lr=config.server_lr,
      server_momentum=config.server_momentum, keras_model=config.tff_model)
  epochs = config.local_epochs if config.algorithm == 'fedavg' else 1
  batch_size = config.batch_size if config.algorithm == 'fedavg' else None
  return Runner(process=process,
                datasets=client_datasets(bank_arrays, batch_size=batch_size, epochs=epochs),
                initial_weights=initial_weights)

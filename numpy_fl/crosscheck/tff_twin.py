"""The TFF twin of the NumPy engine: the same models and algorithms, run by TFF.

The learning process is the credit job's own, `tff_credit.algorithms.build_process`
(TFF's `build_fed_sgd` / `build_weighted_fed_avg` / `build_unweighted_fed_avg`
with the aggregator of `tff_common.aggregation`), so the cross-check covers the
process that job trains with. This module adds the Keras models, the client
datasets and the weight conversion.

Runs on the Python orchestrator; each `next` is one federated round executed by
TFF's runtime (installed by the binary, `tff_common.cli.run`, or by the caller
with `tff_common.runtime.install_execution_context`). Weights cross between the
two engines as NumPy's flat vector `[kernel..., bias]`, which maps onto a Keras
`Dense(1)`'s `(kernel [d, 1], bias [1])`.

The 'dense' logistic model outputs logits and uses
`BinaryCrossentropy(from_logits=True)`: the sigmoid is inside the loss, which
keeps the cross-entropy exact for any logit, as NumPy's `logaddexp` form is (a
sigmoid output layer would make Keras clip probabilities at 1e-7).
"""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Optional

import numpy as np

from tff_common import quiet

# Imported quietly before anything else pulls TensorFlow in with its start-up noise.
tf, tff = quiet.import_tensorflow()

from tff_credit import algorithms as credit_algorithms
from tff_credit import config as credit_config
from tff_credit import model as credit_model

KERAS_MODELS = ('dense', 'credit')
ALGORITHMS = ('fedsgd', 'fedavg')

# numpy_fl's weighting names -> the credit job's.
_CREDIT_WEIGHTINGS = {'uniform': 'uniform', 'num_examples': 'examples'}


def model_fn_for(*, model: str, num_features: int, keras_model: str = 'dense'):
  """A no-arg `model_fn` building a fresh Keras model with one dense unit, wrapped for TFF.

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


def algorithm_config(*, algorithm: str, weighting: str, lr: float, server_lr: float = 1.0,
                     server_momentum: float = 0.0,
                     aggregator: str = 'mean') -> credit_config.AlgorithmConfig:
  """numpy_fl's algorithm settings as the credit job's `AlgorithmConfig`.

  FedSGD's only step size is the server's, so `lr` becomes `server_lr`; FedAvg's
  `lr` is the clients' and `server_lr` the server's. `weighting='num_examples'`
  is the credit job's 'examples'. `server_momentum=0` is TFF's SGD without a
  momentum accumulator, as the NumPy server's.
  """
  if algorithm not in ALGORITHMS:
    raise ValueError(f'unknown algorithm {algorithm!r}; expected one of {", ".join(ALGORITHMS)}')
  if weighting not in _CREDIT_WEIGHTINGS:
    raise ValueError(f'unknown weighting {weighting!r}; expected one of '
                     f'{", ".join(_CREDIT_WEIGHTINGS)}')
  common = dict(algorithm=algorithm, weighting=_CREDIT_WEIGHTINGS[weighting],
                server_momentum=server_momentum, aggregator=aggregator)
  if algorithm == 'fedsgd':
    return credit_config.AlgorithmConfig(server_lr=lr, **common)
  return credit_config.AlgorithmConfig(client_lr=lr, server_lr=server_lr, **common)


def build_process(*, algorithm: str, model: str, num_features: int, weighting: str,
                  lr: float, server_lr: float = 1.0, server_momentum: float = 0.0,
                  aggregator: str = 'mean', keras_model: str = 'dense'):
  """TFF's FedSGD or FedAvg, built by the credit job's `build_process`.

  What runs where, in one call of `next` (the Python orchestrator only calls
  it; TFF's runtime executes it):
    SERVER   broadcasts the model weights W to every client;
    CLIENTS  each computes its update from its own dataset: fedsgd, the
             gradient of its mean loss at W over its (one) full batch; fedavg,
             `W - trained` after local SGD at `lr` over its batches; with a
             weight, its example count (`num_examples`) or 1 (`uniform`);
    SERVER   the aggregator (`tff_common.aggregation`) takes the weighted mean,
             and the server optimizer (SGD at the server learning rate, SGDM
             with `server_momentum > 0`) steps W.

  The process's federated types, for d features:

    initialize: ( -> S@SERVER)
    next:       (<state=S@SERVER, client_data={<float32[?,d],float32[?,1]>*}@CLIENTS>
                 -> <state=S@SERVER, metrics=M@SERVER>)

  with S = <global_model_weights=<trainable=<float32[d,1],float32[1]>,non_trainable=<>>,
  distributor=<>, client_work=..., aggregator=..., finalizer=<learning_rate=float32,...>>
  (client_work holds the client learning rate under fedavg) and M the round's
  metrics, `M.client_work.train.loss` being the clients' Keras loss averaged
  over examples.

  Args:
    algorithm: 'fedsgd' (server SGD at `lr` on the mean gradient) or 'fedavg'
      (client SGD at `lr`, server SGD at `server_lr`).
    model: 'linear' or 'logistic'.
    num_features: Input width d.
    weighting: 'uniform' (the textbook 1/K mean) or 'num_examples'.
    aggregator: A name from `tff_common.aggregation.NAMES`.
    keras_model: See `model_fn_for`.
  """
  config = algorithm_config(algorithm=algorithm, weighting=weighting, lr=lr,
                            server_lr=server_lr, server_momentum=server_momentum,
                            aggregator=aggregator)
  model_fn = model_fn_for(model=model, num_features=num_features, keras_model=keras_model)
  return credit_algorithms.build_process(config, model_fn)


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


class ProcessRunner:
  """A TFF learning process on fixed client datasets, started at given weights.

  What `numpy_fl.crosscheck.lockstep.side_by_side` steps: `next()` runs one
  round, `weights` reads the model in NumPy's flat layout.
  """

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


def twin_for(config, bank_arrays: Mapping[str, tuple[np.ndarray, np.ndarray]],
             initial_weights: np.ndarray) -> ProcessRunner:
  """The TFF twin of `lockstep.build_numpy(config, bank_arrays)`, at `initial_weights`.

  Args:
    config: A `numpy_fl.crosscheck.lockstep.Config`.
    bank_arrays: client name -> (x [n, d], y [n]), in the NumPy engine's order.
    initial_weights: NumPy's flat starting weights.
  """
  num_features = np.asarray(next(iter(bank_arrays.values()))[0]).shape[1]
  process = build_process(
      algorithm=config.algorithm, model=config.model, num_features=num_features,
      weighting=config.weighting, lr=config.lr, server_lr=config.server_lr,
      server_momentum=config.server_momentum, keras_model=config.tff_model)
  epochs = config.local_epochs if config.algorithm == 'fedavg' else 1
  batch_size = config.batch_size if config.algorithm == 'fedavg' else None
  return ProcessRunner(process=process,
                       datasets=client_datasets(bank_arrays, batch_size=batch_size, epochs=epochs),
                       initial_weights=initial_weights)

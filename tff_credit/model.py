"""Scorecard models: logistic regression (default) and a small MLP, in Keras.

The same Keras model serves three places: wrapped by
`tff.learning.models.from_keras_model` it is trained on the banks (clients) by
TFF; compiled as is it is the local-only and pooled baselines; and its weights
score applicants in the evaluation. Released weights are stored by variable
name in the run directory (`save`, `load`).
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_common import run_dir as run_dir_lib
from tff_credit import config as config_lib

MODELS = config_lib.MODELS
MLP_HIDDEN_UNITS = 16


def build_keras_model(*, model: str, num_features: int, seed: int = 0,
                      l2: float = 0.0) -> tf.keras.Model:
  """An uncompiled model mapping features to P(bad); weights seeded.

  `l2` > 0 puts an L2 penalty `l2 * sum(w**2)` on every kernel (not the
  biases) in `keras_model.losses`: Keras's `fit` adds it to the loss, and so
  does TFF's `from_keras_model` (0.87: its `forward_pass` loss is the loss
  function plus `keras_model.losses`; its reported `loss` metric is not).
  """
  initializer = tf.keras.initializers.GlorotUniform(seed=seed)
  regularizer = tf.keras.regularizers.L2(l2) if l2 > 0 else None
  inputs = tf.keras.Input(shape=(num_features,), dtype=tf.float32)
  if model == 'logreg':
    # Zeros start logistic regression at p = 0.5 everywhere: the convex
    # problem needs no random start, and every run begins at the same point.
    outputs = tf.keras.layers.Dense(1, activation='sigmoid', kernel_initializer='zeros',
                                    kernel_regularizer=regularizer, name='score')(inputs)
  elif model == 'mlp':
    hidden = tf.keras.layers.Dense(MLP_HIDDEN_UNITS, activation='relu',
                                   kernel_initializer=initializer, kernel_regularizer=regularizer,
                                   name='hidden')(inputs)
    outputs = tf.keras.layers.Dense(1, activation='sigmoid',
                                    kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed + 1),
                                    kernel_regularizer=regularizer, name='score')(hidden)
  else:
    raise ValueError(f'--model must be one of {", ".join(MODELS)}, got {model!r}')
  return tf.keras.Model(inputs, outputs, name=model)


def input_spec(num_features: int):
  return (tf.TensorSpec([None, num_features], tf.float32), tf.TensorSpec([None, 1], tf.float32))


def model_fn_for(*, model: str, num_features: int, seed: int = 0, l2: float = 0.0):
  """A no-argument `model_fn` for TFF's algorithm builders.

  It builds a `tff.learning.models.VariableModel` from the Keras scorecard with
  binary cross-entropy, AUC and log-loss metrics, on batches
  `(float32[?, num_features], float32[?, 1])`; TFF runs it on the banks. With
  `l2` > 0 the loss the banks train on includes the kernels' L2 penalty (see
  `build_keras_model`); the `loss` and `log_loss` metrics stay the plain
  cross-entropy.
  """

  def model_fn():
    return tff.learning.models.from_keras_model(
        build_keras_model(model=model, num_features=num_features, seed=seed, l2=l2),
        loss=tf.keras.losses.BinaryCrossentropy(),
        input_spec=input_spec(num_features),
        metrics=[tf.keras.metrics.AUC(name='auc', num_thresholds=1000),
                 tf.keras.metrics.BinaryCrossentropy(name='log_loss')])

  return model_fn


def predict(*, model: str, weights: list[np.ndarray], features: np.ndarray) -> np.ndarray:
  """P(bad) for each row, from trainable weights in Keras order."""
  keras_model = build_keras_model(model=model, num_features=features.shape[1])
  keras_model.set_weights(weights)
  return keras_model(features, training=False).numpy().ravel()


def save(run: run_dir_lib.RunDir, weights: Sequence[np.ndarray], *, model: str,
         num_features: int, file_name: str = run_dir_lib.MODEL, **metadata):
  """Releases trainable weights (Keras order) to the run's model file (or
  `file_name`, e.g. `run_dir.MODEL_LAST`), by variable name."""
  keras_model = build_keras_model(model=model, num_features=num_features)
  names = [v.name.split(':')[0] for v in keras_model.trainable_variables]
  run.save_model(dict(zip(names, [np.asarray(w) for w in weights], strict=True)),
                 file_name=file_name, model=model, **metadata)


def load(run: run_dir_lib.RunDir) -> list[np.ndarray]:
  """The released trainable weights, in Keras order."""
  return load_with_metadata(run)[0]


def load_with_metadata(run: run_dir_lib.RunDir, *,
                       file_name: str = run_dir_lib.MODEL) -> tuple[list[np.ndarray], dict]:
  """The released trainable weights and what `save` stored with them (e.g. the
  rounds the model was trained for, the round it was selected at)."""
  arrays, metadata = run.load_model(
      missing_hint='training has not finished in this --output_dir', file_name=file_name)
  return list(arrays.values()), metadata

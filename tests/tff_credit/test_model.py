"""tff_credit.model: the L2 penalty reaches the loss TFF trains on."""

import numpy as np
import pytest
import tensorflow as tf

from tff_credit import model


@pytest.mark.parametrize('family', ['logreg', 'mlp'])
def test_l2_is_in_the_tff_training_loss_and_not_in_its_metrics(tff_context, family):
  del tff_context
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 3)).astype(np.float32)
  y = (rng.random((8, 1)) < 0.5).astype(np.float32)
  losses = {}
  for l2 in (0.0, 0.1):
    tff_model = model.model_fn_for(model=family, num_features=3, seed=1, l2=l2)()
    for variable in tff_model.trainable_variables:  # the same non-zero weights in both
      variable.assign(np.full(variable.shape, 0.5, np.float32))
    output = tff_model.forward_pass((x, y), training=True)
    losses[l2] = (float(output.loss), float(tff_model.report_local_unfinalized_metrics()['loss'][0]))
  kernels = sum(np.prod(v.shape) for v in tff_model.trainable_variables if 'kernel' in v.name)
  # The training loss carries 0.1 * sum(w**2) over the kernels (the biases are not penalized).
  assert losses[0.1][0] == pytest.approx(losses[0.0][0] + 0.1 * 0.25 * kernels, rel=1e-5)
  # The reported loss metric stays the plain cross-entropy.
  assert losses[0.1][1] == pytest.approx(losses[0.0][1], rel=1e-6)


def test_l2_reaches_the_keras_baseline_loss():
  plain = model.build_keras_model(model='logreg', num_features=4)
  penalized = model.build_keras_model(model='logreg', num_features=4, l2=0.01)
  assert plain.losses == [] and len(penalized.losses) == 1
  penalized.set_weights([np.ones((4, 1), np.float32), np.ones(1, np.float32)])
  assert float(tf.add_n(penalized.losses)) == pytest.approx(0.04)

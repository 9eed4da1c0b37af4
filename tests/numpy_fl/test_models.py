"""numpy_fl.models: gradients against finite differences, dtypes, the logistic loss's range."""

import numpy as np
import pytest

from numpy_fl import models
from tests.numpy_fl import problems


@pytest.mark.parametrize('model_name', ['linear', 'logistic'])
def test_gradient_matches_central_finite_differences(model_name):
  model = models.get_model(model_name)
  x, y, w = problems.problem(model_name)
  grad = model.gradient(w, x, y)
  eps = 1e-6
  numeric = np.array([
      (model.loss(w + eps * e, x, y) - model.loss(w - eps * e, x, y)) / (2 * eps)
      for e in np.eye(len(w))])
  np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize('model_name', ['linear', 'logistic'])
def test_float32_keeps_its_dtype_and_agrees_with_float64(model_name):
  model = models.get_model(model_name)
  x, y, w = problems.problem(model_name)
  g64 = model.gradient(w, x, y)
  g32 = model.gradient(w.astype(np.float32), x.astype(np.float32), y.astype(np.float32))
  assert g32.dtype == np.float32
  np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


def test_logistic_loss_is_finite_for_huge_logits():
  model = models.LogisticRegression()
  x = np.array([[1000.0], [-1000.0]])
  y = np.array([0.0, 1.0])
  loss = model.loss(np.array([1.0, 0.0]), x, y)
  assert np.isfinite(loss) and loss == pytest.approx(1000.0)

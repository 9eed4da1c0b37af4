"""tff_credit.preprocess: the federated statistics equal the pooled ones; the encoding."""

import numpy as np
import pytest

from tests.tff_credit.helpers import load
from tff_credit import preprocess


def test_federated_statistics_equal_pooled_statistics(tff_context, loans_csv):
  del tff_context
  table = load(loans_csv)
  rows = [np.arange(0, 100), np.arange(100, 350), np.arange(350, 600)]
  schema = preprocess.federated_schema(table, rows)
  income = table.numeric[:, 0]
  present = income[~np.isnan(income)]
  assert schema.means[0] == pytest.approx(present.mean(), rel=1e-9)
  assert schema.stds[0] == pytest.approx(present.std(), rel=1e-9)
  assert schema.means[1] == pytest.approx(table.numeric[:, 1].mean(), rel=1e-9)
  assert schema.missing_indicators == ['income']
  # The banks' TF computation, summed by TFF, equals count / sum / sum of
  # squares of the pooled rows (computed here in NumPy).
  federated = preprocess.build_federated_sums(table.numeric.shape[1])(
      [table.numeric[r] for r in rows])
  present = ~np.isnan(table.numeric)
  values = np.where(present, table.numeric, 0.0)
  np.testing.assert_allclose(federated, np.concatenate(
      [present.sum(0), values.sum(0), (values ** 2).sum(0)]), rtol=1e-12)
  x = preprocess.encode(table, np.arange(600), schema)
  assert x.shape == (600, 2 + 1 + 3)
  assert abs(x[:, 1].mean()) < 1e-5 and x[:, 1].std() == pytest.approx(1.0, rel=1e-4)
  assert np.all(x[np.isnan(income), 2] == 1.0) and np.all(x[np.isnan(income), 0] == 0.0)

"""tff_credit.federation: each bank's ClientData holds that bank's rows only."""

import numpy as np

from tests.tff_credit.helpers import data_config
from tff_credit import federation


def test_client_data_gives_each_bank_its_own_rows(tff_context, loans_csv):
  del tff_context
  fed = federation.build_federation(data_config(loans_csv, partition='size_skew', seed=0))
  client_data = fed.client_data()
  assert client_data.client_ids == ['bank_1', 'bank_2', 'bank_3']
  for name in fed.bank_names:
    rows = list(client_data.create_tf_dataset_for_client(name).as_numpy_iterator())
    x, y = fed.train[name]
    assert len(rows) == len(y)
    np.testing.assert_array_equal(np.stack([r[0] for r in rows]), x)
  # The banks hold disjoint rows of the table.
  seen = np.concatenate([b.train_rows for b in fed.banks] + [b.test_rows for b in fed.banks])
  assert len(seen) == len(set(seen.tolist()))

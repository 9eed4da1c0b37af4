"""tff_credit.data: strict CSV loading, type detection, missing values, the bundled table."""

import numpy as np
import pytest

from tests.tff_credit.helpers import load
from tests.tff_credit.helpers import write_loans_csv
from tff_common.errors import InputError
from tff_credit import data


def test_csv_types_labels_and_missing_values(loans_csv):
  table = load(loans_csv)
  assert table.numeric_columns == ['income', 'age'] and table.categorical_columns == ['region']
  assert table.num_rows == 600 and table.negative_label == 'paid'
  assert np.isnan(table.numeric[0, 0]) and np.isnan(table.numeric[:, 0]).sum() == len(range(0, 600, 17))
  assert set(np.unique(table.labels)) == {0, 1}


@pytest.mark.parametrize('bad_line,message', [
    ('600,abc,41,north,paid', "line 602: column 'income' has 'abc'; expected a number"),
    ('600,120.5,41,north,maybe', "line 602: column 'outcome' has label 'maybe'; expected 'default' or 'paid'"),
    ('600,120.5,41,north', 'line 602: expected 5 fields, found 4'),
])
def test_bad_row_is_one_clear_error_or_counted_drop(tmp_path, bad_line, message):
  path = write_loans_csv(tmp_path / 'loans.csv', extra_lines=[bad_line])
  with pytest.raises(InputError) as error:
    load(path)
  assert message in str(error.value) and str(path) in str(error.value)
  table = load(path, bad_rows='drop')
  assert table.num_rows == 600 and len(table.dropped) == 1 and message in table.dropped[0]


def test_missing_label_column_names_the_columns(loans_csv):
  with pytest.raises(InputError, match="no label column 'status'; the header has id, income"):
    data.load_table(data=str(loans_csv), label_column='status', positive_label='default')


def test_bundled_data_keeps_every_row():
  table = data.load_table()
  assert table.num_rows == 4454 and table.dropped == []
  assert table.labels.mean() == pytest.approx(1254 / 4454, abs=0.01)  # "bad" is the positive class
  assert np.isnan(table.column('Income')).sum() == 381

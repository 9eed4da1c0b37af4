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
    # Magnitudes whose squares overflow the float64 federated sums (MAX_MAGNITUDE).
    ('600,1e308,41,north,paid', "line 602: column 'income' has '1e308'; expected a number "
                                'between -1e+150 and 1e+150 (larger magnitudes overflow'),
    ('600,120.5,-1e200,north,paid', "line 602: column 'age' has '-1e200'; expected a number "
                                    'between -1e+150 and 1e+150'),
    ('600,inf,41,north,paid', "line 602: column 'income' has 'inf'; expected a number between"),
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


def _rewrite(path, transform):
  path.write_bytes(transform(path.read_bytes()))
  return path


def test_values_up_to_the_bound_are_kept_and_nan_text_is_missing(tmp_path):
  path = write_loans_csv(tmp_path / 'loans.csv',
                         extra_lines=['600,1e150,41,north,paid', '601,NaN,-1e150,south,paid'])
  table = load(path)
  assert table.num_rows == 602 and table.dropped == []
  assert table.numeric[600, 0] == 1e150 and np.isnan(table.numeric[601, 0])
  assert table.numeric[601, 1] == -1e150


def test_ten_huge_values_are_counted_drops(tmp_path):
  path = write_loans_csv(tmp_path / 'loans.csv',
                         extra_lines=[f'{600 + i},1e200,41,north,paid' for i in range(10)])
  table = load(path, bad_rows='drop')
  assert table.num_rows == 600 and len(table.dropped) == 10
  assert np.isfinite(np.nansum(table.numeric ** 2))
  assert "line 611: column 'income' has '1e200'" in table.dropped[-1]


@pytest.mark.parametrize('transform', [
    lambda raw: b'\xef\xbb\xbf' + raw,                       # a UTF-8 byte-order mark
    lambda raw: raw.replace(b'\n', b'\r\n'),                  # Windows line endings
    lambda raw: b'\xef\xbb\xbf' + raw.replace(b'\n', b'\r\n'),
    lambda raw: raw.replace(b'\n', b'\r'),                     # old Mac line endings
    lambda raw: raw + b'\n\n,,,,\n  \n',                       # trailing blank and empty rows
    lambda raw: raw.replace(b',north,', b',"north",'),         # quoted fields
], ids=['bom', 'crlf', 'bom-crlf', 'cr', 'trailing-empty-rows', 'quoted'])
def test_bom_line_endings_quotes_and_empty_rows_read_like_the_plain_file(loans_csv, transform):
  plain = load(loans_csv)
  table = load(_rewrite(loans_csv, transform))
  assert table.num_rows == 600 and table.dropped == []
  assert table.numeric_columns == plain.numeric_columns
  assert table.categorical_columns == plain.categorical_columns
  np.testing.assert_array_equal(table.numeric, plain.numeric)
  np.testing.assert_array_equal(table.categorical, plain.categorical)
  np.testing.assert_array_equal(table.labels, plain.labels)


@pytest.mark.parametrize('bad_rows', ['error', 'drop'])
def test_non_utf8_byte_is_one_error_naming_line_and_column(loans_csv, bad_rows):
  # Latin-1 "ö" in the first row with region north; an encoding problem is the
  # file's, so it is an error even with --bad_rows=drop.
  path = _rewrite(loans_csv, lambda raw: raw.replace(b',north,', b',n\xf6rth,', 1))
  line = 1 + next(i for i, text in enumerate(path.read_bytes().split(b'\n')) if b'\xf6' in text)
  with pytest.raises(InputError) as error:
    load(path, bad_rows=bad_rows)
  assert str(error.value) == (f"{path}, line {line}, column 'region': byte 0xF6 is not UTF-8; "
                              'expected a UTF-8 file (re-save it as UTF-8)')


@pytest.mark.parametrize('transform, message', [
    (lambda raw: raw.decode().encode('utf-16'),
     'the file is UTF-16 encoded; expected a CSV file in UTF-8 (re-save it as UTF-8)'),
    (lambda raw: raw.replace(b',', b'\t'),
     'line 1: the header has no commas but tabs (a TSV file?); expected comma-separated values'),
    (lambda raw: raw.replace(b',', b';'),
     'line 1: the header has no commas but semicolons; expected comma-separated values'),
    (lambda raw: b'PK\x03\x04' + raw,
     'the file is a ZIP archive (an Excel workbook, a zipped download?); expected a CSV file'),
    (lambda raw: raw.replace(b'id,income', b'id, income ,income', 1),
     "line 1: duplicate column names ['income']"),
    (lambda raw: raw.replace(b'outcome', b'outcome,', 1),
     'line 1: column 6 of the header has no name; expected a name for every column'),
    (lambda raw: b'\n' + raw,
     'line 1: the header is empty; expected the column names'),
    (lambda raw: raw.split(b'\n')[0] + b'\n\n',
     'no data rows after the header; expected rows of id, income, age, region, outcome'),
    (lambda raw: b'', 'the file is empty; expected a header line'),
], ids=['utf16', 'tsv', 'semicolons', 'xlsx', 'duplicate', 'unnamed', 'empty-header',
        'header-only', 'empty'])
def test_file_problems_are_one_clear_error(loans_csv, transform, message):
  path = _rewrite(loans_csv, transform)
  for bad_rows in ('error', 'drop'):
    with pytest.raises(InputError) as error:
      load(path, bad_rows=bad_rows)
    assert str(error.value).startswith(f'{path}') and message in str(error.value)


def test_whitespace_around_column_names_is_stripped(loans_csv):
  table = load(_rewrite(loans_csv, lambda raw: raw.replace(
      b'id,income,age,region,outcome', b' id , income,age ,region,\toutcome ', 1)))
  assert table.numeric_columns == ['income', 'age'] and table.categorical_columns == ['region']
  assert table.label_column == 'outcome' and table.num_rows == 600


@pytest.mark.parametrize('bad_rows', ['error', 'drop'])
def test_positive_label_not_in_the_label_column_is_a_bad_flag(loans_csv, bad_rows):
  with pytest.raises(InputError) as error:
    data.load_table(data=str(loans_csv), label_column='outcome', positive_label='yes',
                    drop_columns=['id'], bad_rows=bad_rows)
  assert str(error.value) == "--positive_label='yes': the label column 'outcome' holds 'default', 'paid'"


@pytest.mark.parametrize('lines, message', [
    (['0,1.5,20,north,default', '1,2.5,30,south,paid', '2,3.5,40,east,paid'],
     "column 'outcome' holds 1 usable row of 'default'; expected at least 2 rows of each class"),
    (['0,1.5,20,north,default', '1,2.5,30,south,default', '2,3.5,40,east,paid'],
     "column 'outcome' holds 1 usable row of 'paid'; expected at least 2 rows of each class"),
    (['0,1.5,20,north,default', '1,2.5,30,south,default'],
     "column 'outcome' holds only 'default'; expected two classes"),
])
def test_too_few_rows_of_a_class_is_one_clear_error(tmp_path, lines, message):
  path = tmp_path / 'loans.csv'
  path.write_text('\n'.join(['id,income,age,region,outcome'] + lines) + '\n')
  with pytest.raises(InputError) as error:
    load(path)
  assert str(error.value).startswith(f'{path}: {message}')


def test_every_row_dropped_is_one_clear_error(tmp_path):
  path = tmp_path / 'loans.csv'
  path.write_text('id,income,age,region,outcome\n0,1.5,20,north\n1,2.5,30,south,paid,x\n')
  with pytest.raises(InputError) as error:
    load(path, bad_rows='drop')
  assert str(error.value) == (f'{path}: no usable rows: all 2 data rows are bad (--bad_rows=drop); '
                              f'the first: {path}, line 2: expected 5 fields, found 4')


def test_unclosed_quote_names_the_lines_it_swallows(tmp_path):
  path = write_loans_csv(tmp_path / 'loans.csv', extra_lines=[
      '600,120.5,41,"north,paid', '601,130.5,42,south,paid', '602,140.5,43,east,paid'])
  message = ('line 602: expected 5 fields, found 4 (a quoted field runs to line 604: an '
             'unclosed quote?)')
  with pytest.raises(InputError) as error:
    load(path)
  assert str(error.value) == f'{path}, {message}'
  table = load(path, bad_rows='drop')
  assert table.num_rows == 600 and table.dropped == [f'{path}, {message}']

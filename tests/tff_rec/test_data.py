"""tff_rec.data: the three MovieLens formats, titles, and malformed input."""

import numpy as np
import pytest

from tff_common import errors
from tff_rec import data as data_lib
from tff_rec import synthetic


@pytest.mark.parametrize('fmt', data_lib.FORMATS)
def test_detects_each_movielens_format_and_reads_titles(tmp_path, fmt):
  ratings = synthetic.synthetic_ratings()
  path = synthetic.write(ratings, str(tmp_path / fmt), fmt)
  loaded = data_lib.load_file(path)
  assert fmt in loaded.source and loaded.skipped_lines == 0
  np.testing.assert_array_equal(loaded.user, ratings.user)
  np.testing.assert_array_equal(loaded.item, ratings.item)
  np.testing.assert_array_equal(loaded.rating, ratings.rating)
  np.testing.assert_array_equal(loaded.timestamp, ratings.timestamp)
  expected_title = 'Movie 3 (2000), The' if fmt == 'ml-latest' else 'Movie 3 (2000)'
  assert loaded.titles[103] == expected_title


@pytest.mark.parametrize('bad_line, column_text', [
    ('7\t101\tfive\t1000', 'line 3, column 3 (rating): expected a number'),
    ('7\t101\t4', 'line 3: expected 4 fields'),
    ('x7\t101\t4\t1000', 'line 3, column 1 (user): expected an integer'),
    ('7\t101\t9\t1000', 'line 3, column 3 (rating): expected a rating between'),
])
def test_malformed_line_is_one_clear_error_or_counted(tmp_path, bad_line, column_text):
  path = tmp_path / 'u.data'
  path.write_text('1\t100\t4\t10\n2\t100\t3\t11\n' + bad_line + '\n3\t101\t5\t12\n')
  with pytest.raises(errors.InputError) as raised:
    data_lib.load_file(str(path))
  assert str(raised.value).startswith(f'{path}, ') and column_text in str(raised.value)
  loaded = data_lib.load_file(str(path), skip_bad_lines=True)
  assert loaded.skipped_lines == 1 and len(loaded) == 3


def test_unknown_format_and_missing_file_are_input_errors(tmp_path):
  path = tmp_path / 'r.txt'
  path.write_text('1 100 4 10\n')
  with pytest.raises(errors.InputError, match='cannot tell the ratings format'):
    data_lib.load_file(str(path))
  with pytest.raises(errors.InputError, match='no such ratings file'):
    data_lib.load_file(str(tmp_path / 'absent.csv'))

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
    # Ratings on another scale (here 1-10), and nan, are outside MovieLens' scale.
    ('7\t101\t10\t1000', 'line 3, column 3 (rating): expected a rating between 0.5 and 5.0 '
                          "(the MovieLens scale; rescale ratings on another scale), found '10'"),
    ('7\t101\tnan\t1000', 'line 3, column 3 (rating): expected a rating between'),
    ('7\t101\t4\t-1', "line 3, column 4 (timestamp): expected Unix time in seconds (0 or "
                       "more), found '-1'"),
    ('7\t99999999999999999999\t4\t1000', 'line 3, column 2 (item): expected a non-negative id '
                                         "that fits in 64 bits, found '99999999999999999999'"),
    # A negative user id would reach the device's seeding (NumPy takes non-negative seeds).
    ('-7\t101\t4\t1000', 'line 3, column 1 (user): expected a non-negative id'),
    ('7\t101\t4\t1000\t', 'line 3: expected 4 fields (user, item, rating, timestamp), found 5'),
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


def _rewrite(path, transform):
  with open(path, 'rb') as f:
    raw = f.read()
  with open(path, 'wb') as f:
    f.write(transform(raw))
  return path


@pytest.mark.parametrize('fmt', data_lib.FORMATS)
@pytest.mark.parametrize('transform', [
    lambda raw: b'\xef\xbb\xbf' + raw.replace(b'\n', b'\r\n'),  # Excel: BOM and CRLF
    lambda raw: raw.replace(b'\n', b'\r'),                        # old Mac line endings
    lambda raw: b'\n' + raw + b'\n\n  \n',                          # blank lines
], ids=['bom-crlf', 'cr', 'blank-lines'])
def test_bom_and_any_line_ending_read_like_the_plain_file(tmp_path, fmt, transform):
  ratings = synthetic.synthetic_ratings()
  path = _rewrite(synthetic.write(ratings, str(tmp_path / fmt), fmt), transform)
  loaded = data_lib.load_file(path)
  assert loaded.skipped_lines == 0 and loaded.duplicate_ratings == 0
  np.testing.assert_array_equal(loaded.user, ratings.user)
  np.testing.assert_array_equal(loaded.rating, ratings.rating)
  np.testing.assert_array_equal(loaded.timestamp, ratings.timestamp)


def test_quoted_csv_fields_and_a_header_on_a_tab_file_are_read(tmp_path):
  quoted = tmp_path / 'ratings.csv'
  quoted.write_text('"userId","movieId","rating","timestamp"\n"1","100","3.5","10"\n'
                    '2,100,4,11\n')
  loaded = data_lib.load_file(str(quoted))
  assert loaded.user.tolist() == [1, 2] and loaded.rating.tolist() == [3.5, 4.0]
  tab = tmp_path / 'u.data'
  tab.write_text('userId\tmovieId\trating\ttimestamp\n1\t100\t4\t10\n')
  assert data_lib.load_file(str(tab)).item.tolist() == [100]


def test_a_header_without_timestamps_is_one_clear_error(tmp_path):
  path = tmp_path / 'ratings.csv'
  path.write_text('userId,movieId,rating\n1,100,4\n')
  for skip in (False, True):  # the header is the file's, not a line to skip
    with pytest.raises(errors.InputError) as raised:
      data_lib.load_file(str(path), skip_bad_lines=skip)
    assert str(raised.value) == (f"{path}, line 1: expected the header userId,movieId,rating,"
                                 "timestamp, found 'userId,movieId,rating'")


def test_non_utf8_byte_is_a_malformed_line(tmp_path):
  path = tmp_path / 'u.data'
  path.write_bytes(b'1\t100\t4\t10\n2\t100\t3\t11\n3\t1\xe901\t5\t12\n3\t101\t5\t12\n')
  with pytest.raises(errors.InputError) as raised:
    data_lib.load_file(str(path))
  assert str(raised.value) == (f'{path}, line 3: byte 0xE9 is not UTF-8; expected numbers and '
                               'separators only')
  loaded = data_lib.load_file(str(path), skip_bad_lines=True)
  assert loaded.skipped_lines == 1 and len(loaded) == 3


@pytest.mark.parametrize('content, message', [
    ('1\t100\t4\t10\n'.encode('utf-16'), 'the file is UTF-16 encoded; expected a MovieLens ratings file in UTF-8'),
    (b'PK\x03\x04\x14\x00', 'the file is a ZIP archive (an Excel workbook, a zipped download?); expected a MovieLens'),
    (b'\x1f\x8b\x08\x00', 'the file is gzip-compressed; expected a MovieLens ratings file as plain'),
    (b'', 'no ratings found; expected lines of user, item, rating and timestamp'),
    (b'\r\n\r\n', 'no ratings found; expected lines of user, item, rating and timestamp'),
    (b'userId,movieId,rating,timestamp\n', 'no ratings found; expected lines of user, item'),
])
def test_files_without_ratings_or_not_text_are_one_clear_error(tmp_path, content, message):
  path = tmp_path / 'ratings.csv'
  path.write_bytes(content)
  for skip in (False, True):
    with pytest.raises(errors.InputError) as raised:
      data_lib.load_file(str(path), skip_bad_lines=skip)
    assert str(raised.value).startswith(f'{path}: {message}')


def test_every_line_skipped_is_one_clear_error(tmp_path):
  path = tmp_path / 'u.data'
  path.write_text('1\t100\t4\n2\t100\tx\t11\n')
  with pytest.raises(errors.InputError) as raised:
    data_lib.load_file(str(path), skip_bad_lines=True)
  assert str(raised.value) == (f'{path}: no ratings found: all 2 lines are malformed '
                               '(--skip_bad_lines skipped them)')


def test_duplicate_ratings_keep_the_latest_and_are_counted(tmp_path):
  path = tmp_path / 'u.data'
  path.write_text('1\t100\t4\t10\n'    # older than line 3: dropped
                  '2\t100\t1\t50\n'    # tie with line 4 on time: the later line wins
                  '1\t100\t2\t20\n'
                  '2\t100\t5\t50\n'
                  '1\t101\t3\t5\n'
                  '1\t100\t1\t15\n')  # older than line 3: dropped
  loaded = data_lib.load_file(str(path))
  assert loaded.duplicate_ratings == 3 and len(loaded) == 3
  # One rating per (user, item), in file order.
  assert list(zip(loaded.user.tolist(), loaded.item.tolist(), loaded.rating.tolist(),
                  loaded.timestamp.tolist())) == [(1, 100, 2.0, 20), (2, 100, 5.0, 50),
                                                  (1, 101, 3.0, 5)]


def test_titles_in_utf8_or_latin1(tmp_path):
  ratings = synthetic.synthetic_ratings()
  path = synthetic.write(ratings, str(tmp_path / 'latest'), 'ml-latest')
  with open(tmp_path / 'latest' / 'movies.csv', 'w', encoding='utf-8') as f:
    f.write('movieId,title,genres\r\n100,Amélie (2001),Comedy\r\n')
  assert data_lib.load_file(path).titles == {100: 'Amélie (2001)'}
  path = synthetic.write(ratings, str(tmp_path / '100k'), 'ml-100k')
  with open(tmp_path / '100k' / 'u.item', 'w', encoding='latin-1') as f:
    f.write('100|Amélie (2001)|01-Jan-2001||http://x|0|1\n')
  assert data_lib.load_file(path).titles == {100: 'Amélie (2001)'}


def test_bundled_data_keeps_every_rating():
  ratings = data_lib.load(None)
  assert len(ratings) == 100_004 and ratings.duplicate_ratings == 0 and ratings.skipped_lines == 0

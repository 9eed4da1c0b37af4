"""Validation of settings: the one path every binary's flags go through.

Each config dataclass has a `check()` built from these functions; the library
calls it before anything is read or written, so a wrong value never leaves a
half-made run directory. A failure is one `errors.InputError` naming the flag,
its value and what is allowed, e.g. `--client_lr=-0.5: expected a number > 0`.
"""

from collections.abc import Iterable
from typing import Any
from typing import Optional

from tff_common import errors


def _show(value: Any) -> str:
  return repr(value) if isinstance(value, str) else str(value)


def fail(flag: str, value: Any, expected: str):
  raise errors.InputError(f'--{flag}={_show(value)}: expected {expected}')


def positive(flag: str, value: float):
  if not value > 0:  # also refuses NaN
    fail(flag, value, 'a number > 0')


def non_negative(flag: str, value: float):
  if not value >= 0:
    fail(flag, value, 'a number >= 0')


def at_least(flag: str, value: int, minimum: int):
  if not value >= minimum:
    fail(flag, value, f'an integer >= {minimum}')


def optional_at_least(flag: str, value: Optional[int], minimum: int):
  """None (the flag's 'not set') or at least `minimum`."""
  if value is not None:
    at_least(flag, value, minimum)


def in_range(flag: str, value: float, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False):
  """low <= value <= high, with either end open."""
  above = value > low if low_open else value >= low
  below = value < high if high_open else value <= high
  if not (above and below):
    fail(flag, value, f'a number in {"(" if low_open else "["}{low:g}, {high:g}'
                      f'{")" if high_open else "]"}')


def one_of(flag: str, value: Any, choices: Iterable[Any]):
  choices = list(choices)
  if value not in choices:
    fail(flag, value, 'one of ' + ', '.join(str(c) for c in choices))

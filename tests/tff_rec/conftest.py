"""Fixtures of the tff_rec tests (settings and helpers: tests/tff_rec/helpers.py)."""

import pytest

from tff_rec import split as split_lib
from tff_rec import synthetic


@pytest.fixture(scope='session')
def tiny_split():
  """The synthetic ratings split for in-process training (tests only read it)."""
  return split_lib.split_ratings(synthetic.synthetic_ratings(), test_fraction=0.25,
                                 heldout_users_fraction=0.125, seed=0)

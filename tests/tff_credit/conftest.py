"""Fixtures of the tff_credit tests (helpers in helpers.py)."""

import pytest

from tests.tff_credit import helpers


@pytest.fixture
def loans_csv(tmp_path):
  """A 600-row synthetic loans CSV (helpers.write_loans_csv)."""
  return helpers.write_loans_csv(tmp_path / 'loans.csv')

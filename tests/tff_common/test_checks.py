"""tff_common.checks: one line naming the flag, the value and what is allowed."""

import math

import pytest

from tff_common import checks
from tff_common import errors


@pytest.mark.parametrize('call,message', [
    (lambda: checks.positive('client_lr', -0.5), '--client_lr=-0.5: expected a number > 0'),
    (lambda: checks.positive('client_lr', 0.0), '--client_lr=0.0: expected a number > 0'),
    (lambda: checks.positive('lr', math.nan), '--lr=nan: expected a number > 0'),
    (lambda: checks.non_negative('mu', -1.0), '--mu=-1.0: expected a number >= 0'),
    (lambda: checks.at_least('rounds', -1, 1), '--rounds=-1: expected an integer >= 1'),
    (lambda: checks.optional_at_least('clients_per_round', 0, 1),
     '--clients_per_round=0: expected an integer >= 1'),
    (lambda: checks.in_range('test_fraction', 1.5, 0, 1, low_open=True, high_open=True),
     '--test_fraction=1.5: expected a number in (0, 1)'),
    (lambda: checks.in_range('heldout_users_fraction', 1.0, 0, 1, high_open=True),
     '--heldout_users_fraction=1.0: expected a number in [0, 1)'),
    (lambda: checks.one_of('partition', 'zipf', ('iid', 'size_skew')),
     "--partition='zipf': expected one of iid, size_skew"),
])
def test_each_check_is_one_line_naming_flag_value_and_allowed(call, message):
  with pytest.raises(errors.InputError) as raised:
    call()
  assert str(raised.value) == message


def test_values_in_range_pass():
  checks.positive('lr', 1e-9)
  checks.non_negative('mu', 0.0)
  checks.at_least('rounds', 1, 1)
  checks.optional_at_least('clients_per_round', None, 1)
  checks.in_range('f', 0.0, 0, 1, high_open=True)
  checks.one_of('partition', 'iid', ('iid',))

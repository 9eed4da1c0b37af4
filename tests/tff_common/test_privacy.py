"""tff_common.privacy: ε from dp_accounting, calibration, δ, the reported guarantee.

Under 'fixed' sampling one ε costs ~0.5 s (dp_accounting's without-replacement
bound), so 'fixed' is evaluated twice only; the rest uses Poisson sampling
(~0.05 s) or, for the search itself, an analytic ε curve.
"""

import json
import math
import pathlib
import re
import subprocess
import sys

import dp_accounting
import pytest
from dp_accounting import rdp

from tff_common import errors
from tff_common import privacy

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _direct_epsilon(event, relation, delta):
  accountant = rdp.RdpAccountant(rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS, relation)
  accountant.compose(event)
  return accountant.get_epsilon(delta)


def test_poisson_and_all_epsilon_are_dp_accountings():
  event = dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(50 / 604, dp_accounting.GaussianDpEvent(1.1)), 100)
  expected = _direct_epsilon(event, dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE, 1e-3)
  mechanism = privacy.Mechanism(1.1, 'poisson', 50, 604, 100, 1e-3)
  assert privacy.epsilon(mechanism) == pytest.approx(expected, rel=1e-12)
  assert 3 < expected < 4  # the hand-set case is a meaningful one
  assert mechanism.neighbouring_relation == 'add-or-remove-one'

  event = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(20.0), 10)
  expected = _direct_epsilon(event, dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE, 1e-5)
  assert privacy.epsilon(privacy.Mechanism(20.0, 'all', 7, 7, 10, 1e-5)) == pytest.approx(
      expected, rel=1e-12)


def test_fixed_epsilon_is_replace_one_with_the_doubled_sensitivity():
  # Replacing one of 50 clipped updates moves their sum by 2C: z=2.2 accounts as 1.1.
  event = dp_accounting.SelfComposedDpEvent(
      dp_accounting.SampledWithoutReplacementDpEvent(604, 50, dp_accounting.GaussianDpEvent(1.1)),
      100)
  expected = _direct_epsilon(event, dp_accounting.NeighboringRelation.REPLACE_ONE, 1e-3)
  mechanism = privacy.Mechanism(2.2, 'fixed', 50, 604, 100, 1e-3)
  assert privacy.epsilon(mechanism) == pytest.approx(expected, rel=1e-12)
  assert mechanism.neighbouring_relation == 'replace-one'


def test_no_noise_is_infinite_epsilon():
  assert privacy.epsilon(privacy.Mechanism(0.0, 'fixed', 50, 604, 100, 1e-3)) == math.inf


def test_epsilon_grows_with_steps_and_falls_with_noise():
  def eps(z, steps):
    return privacy.epsilon(privacy.Mechanism(z, 'poisson', 32, 300, steps, 1e-5))
  assert eps(1.0, 10) < eps(1.0, 100) < eps(1.0, 1000)
  assert eps(0.7, 100) > eps(1.0, 100) > eps(2.0, 100)


def test_calibration_is_within_one_percent_below_the_target():
  for target in (0.5, 4.0):
    z = privacy.calibrate_noise_multiplier(target, sampling='poisson', sample_size=50,
                                           population=604, steps=100, delta=1e-3)
    reached = privacy.epsilon(privacy.Mechanism(z, 'poisson', 50, 604, 100, 1e-3))
    assert 0.99 * target <= reached <= target
    # And it is (about) the smallest: 5% less noise overshoots the target.
    assert privacy.epsilon(privacy.Mechanism(0.95 * z, 'poisson', 50, 604, 100, 1e-3)) > target


@pytest.mark.parametrize('curve,solution', [
    (lambda z: 3.0 / z, 1.0),                  # ε(1) = target: found at once
    (lambda z: 3.0 / z ** 2, 1.0),
    (lambda z: 30.0 / z, 10.0),                # grow the bracket
    (lambda z: 0.03 / z, 0.01),                # shrink it
    (lambda z: math.inf if z < 2 else 6.0 / z, 2.0),  # infinite below a point: bisection
    (lambda z: 3.0 * math.exp(5.0 - 5.0 * z), 1.0),
])
def test_search_finds_the_smallest_noise_on_analytic_curves(curve, solution):
  target = 3.0
  z = privacy._smallest_noise(curve, target, 1e-3)
  assert 0.99 * target <= curve(z) <= target
  assert solution <= z <= solution * 1.02


def test_unreachable_target_is_one_clear_error():
  with pytest.raises(errors.InputError) as raised:
    # Every participant at each of 10^8 steps: z = 1000 still gives ε ~ 60.
    privacy.calibrate_noise_multiplier(0.5, sampling='all', sample_size=10, population=10,
                                       steps=10 ** 8, delta=1e-3)
  assert re.fullmatch(r'--target_epsilon=0\.5: expected a number >= [0-9.]+, the ε of the most '
                      r'noise calibration tries \(z=1000\) at δ=1e-3', str(raised.value))
  with pytest.raises(errors.InputError, match=r'^--target_epsilon=0\.0: expected a number > 0$'):
    privacy.calibrate_noise_multiplier(0.0, sampling='poisson', sample_size=50,
                                       population=604, steps=100, delta=1e-3)


@pytest.mark.parametrize('population,delta', [
    (604, 1e-3), (6040, 1e-4), (1000, 1e-4), (999, 1e-3), (10, 1e-2), (9, 0.1), (1, 0.1)])
def test_default_delta_is_a_power_of_ten_below_one_over_n(population, delta):
  assert privacy.default_delta(population) == pytest.approx(delta, rel=1e-12)
  assert privacy.default_delta(population) < 1 / population


@pytest.mark.parametrize('mechanism,flags,message', [
    (privacy.Mechanism(-1.0, 'poisson', 5, 10, 3, 1e-3), None,
     '--noise_multiplier=-1.0: expected a number in [0, inf)'),
    (privacy.Mechanism(math.nan, 'poisson', 5, 10, 3, 1e-3), None,
     '--noise_multiplier=nan: expected a number in [0, inf)'),
    (privacy.Mechanism(1.0, 'shuffle', 5, 10, 3, 1e-3), None,
     "--sampling='shuffle': expected one of poisson, fixed, all"),
    (privacy.Mechanism(1.0, 'fixed', 11, 10, 3, 1e-3), {'sample_size': 'clients_per_round'},
     '--clients_per_round=11: expected an integer from 1 to 10 (the population)'),
    (privacy.Mechanism(1.0, 'fixed', 0, 10, 3, 1e-3), None,
     '--sample_size=0: expected an integer >= 1'),
    (privacy.Mechanism(1.0, 'fixed', 5, 10.5, 3, 1e-3), None,
     '--population=10.5: expected an integer >= 1'),
    (privacy.Mechanism(1.0, 'all', 5, 10, 3, 1e-3), None,
     "--sample_size=5: expected 10 (the population): every participant takes part under "
     "sampling 'all'"),
    (privacy.Mechanism(1.0, 'poisson', 5, 10, 0, 1e-3), {'steps': 'rounds'},
     '--rounds=0: expected an integer >= 1'),
    (privacy.Mechanism(1.0, 'poisson', 5, 10, 3, 0.0), None,
     '--delta=0.0: expected a number in (0, 1)'),
    (privacy.Mechanism(1.0, 'poisson', 5, 10, 3, 1.0), None,
     '--delta=1.0: expected a number in (0, 1)'),
])
def test_bad_mechanism_is_one_line_naming_the_flag(mechanism, flags, message):
  with pytest.raises(errors.InputError) as raised:
    mechanism.check(flags)
  assert str(raised.value) == message
  with pytest.raises(errors.InputError):
    privacy.epsilon(mechanism)


def test_sampling_for_follows_the_programs_sampler():
  assert privacy.sampling_for(None, 604) == 'all'
  assert privacy.sampling_for(604, 604) == 'all'
  assert privacy.sampling_for(900, 604) == 'all'
  assert privacy.sampling_for(50, 604) == 'fixed'


def test_guarantee_json_and_text():
  guarantee = privacy.Guarantee(
      level='user', epsilon=2.9512, mechanism=privacy.Mechanism(1.1, 'fixed', 50, 604, 100, 1e-3),
      clip_norm=0.5)
  assert guarantee.private
  assert guarantee.to_text() == (
      'user-level (ε=2.95, δ=1e-3): Gaussian noise z=1.1 on updates clipped to 0.5, '
      '50 of 604 users per round sampled without replacement, 100 rounds, RDP accountant, '
      'replace-one')
  assert guarantee.to_json() == {
      'differential_privacy': 'user-level', 'epsilon': 2.9512, 'delta': 1e-3,
      'accountant': 'RDP', 'neighbouring_relation': 'replace-one', 'noise_multiplier': 1.1,
      'clip_norm': 0.5, 'clipped': 'updates', 'sampling': 'fixed', 'sample_size': 50,
      'population': 604, 'participants': 'users', 'steps': 100, 'step': 'round', 'note': ''}

  poisson = privacy.Guarantee(
      level='customer', epsilon=12.25,
      mechanism=privacy.Mechanism(0.9, 'poisson', 32, 150, 200, 1e-5),
      clip_norm=None, clipped='per-example gradients', participants='rows', step='step',
      note="the largest ε of 3 banks, bank 'b1'")
  assert poisson.to_text() == (
      'customer-level (ε=12.2, δ=1e-5): Gaussian noise z=0.9 on clipped per-example gradients, '
      'each of 150 rows sampled independently with probability 0.213 per step (32 expected), '
      "200 steps, RDP accountant, add-or-remove-one; the largest ε of 3 banks, bank 'b1'")

  no_noise = privacy.Guarantee.of(privacy.Mechanism(0.0, 'all', 5, 5, 1, 0.05), level='bank',
                                  participants='banks')
  assert no_noise.to_json()['epsilon'] == 'inf'
  json.dumps(no_noise.to_json(), allow_nan=False)  # summary.json stays strict JSON
  assert no_noise.to_text().startswith('bank-level (ε=∞, δ=0.05): Gaussian noise z=0 on clipped '
                                       'updates, all 5 banks every round, 1 round,')

  with pytest.raises(ValueError, match='level'):
    privacy.Guarantee(level='none', epsilon=1.0, mechanism=guarantee.mechanism)


def test_none_means_no_differential_privacy():
  assert privacy.NONE.to_json() == {'differential_privacy': 'none'}
  assert privacy.NONE.to_text() == 'no differential privacy'
  assert not privacy.NONE.private


BANKS = {'b1': privacy.BankSteps(rows=150, batch_size=32, steps=40 * 5),
         'b2': privacy.BankSteps(rows=300, batch_size=32, steps=40 * 10),
         'b3': privacy.BankSteps(rows=450, batch_size=32, steps=40 * 15),
         'b4': privacy.BankSteps(rows=450, batch_size=32, steps=40 * 15)}


def test_per_bank_epsilons_and_their_maximum():
  result = privacy.per_bank_epsilons(BANKS, noise_multiplier=1.0, delta=1e-5)
  for name, bank in BANKS.items():
    alone = privacy.Mechanism(1.0, 'poisson', bank.batch_size, bank.rows, bank.steps, 1e-5)
    assert result.epsilons[name] == privacy.epsilon(alone)
  # The same epochs: the smallest bank samples the largest share of its rows.
  assert result.worst == 'b1'
  assert result.epsilon == max(result.epsilons.values()) > result.epsilons['b3']
  assert result.epsilons['b3'] == result.epsilons['b4']
  guarantee = result.guarantee(clip_norm=1.0)
  assert guarantee.to_json()['differential_privacy'] == 'customer-level'
  assert guarantee.to_json()['population'] == 150
  assert guarantee.to_text().endswith("; the largest ε of 4 banks, bank 'b1'")

  with pytest.raises(errors.InputError, match=r"^--batch_size \(bank 'b9'\)=64: expected an "
                                              r'integer from 1 to 40 \(the population\)$'):
    privacy.per_bank_epsilons({'b9': privacy.BankSteps(40, 64, 10)}, noise_multiplier=1.0,
                              delta=1e-5)


def test_per_bank_calibration_bounds_the_largest_epsilon():
  z = privacy.calibrate_per_bank(8.0, BANKS, delta=1e-5)
  reached = privacy.per_bank_epsilons(BANKS, noise_multiplier=z, delta=1e-5).epsilon
  assert 0.99 * 8.0 <= reached <= 8.0


def test_loads_without_tensorflow():
  code = ('import sys\nimport tff_common.privacy\n'
          "print(sorted(m for m in ('tensorflow', 'tensorflow_federated') if m in sys.modules))")
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == '[]'


def test_print_noise_for_typical_targets(capsys):
  """Not a check: the z each job needs, printed for the report (`pytest -s`).

  User-level is shown under Poisson sampling: 'fixed' costs ~2-4 s a target.
  """
  users = {}
  for target in (1, 3, 10, 30):
    users[target] = privacy.calibrate_noise_multiplier(
        target, sampling='poisson', sample_size=50, population=604, steps=100, delta=1e-3)
  customers = {}
  for target in (1, 3, 10, 30):
    customers[target] = privacy.calibrate_per_bank(target, BANKS, delta=1e-5)
  with capsys.disabled():
    print('\nuser-level, 50 of 604 Poisson, 100 rounds, δ=1e-3: ' +
          ', '.join(f'ε={t}: z={z:.3f}' for t, z in users.items()))
    print('customer-level DP-SGD, 150-450 rows, batch 32, 40 epochs, δ=1e-5: ' +
          ', '.join(f'ε={t}: z={z:.3f}' for t, z in customers.items()))
  assert list(users.values()) == sorted(users.values(), reverse=True)

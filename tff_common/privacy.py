"""Differential-privacy accounting: the (ε, δ) a training run's noise buys.

Runs on the orchestrator only, before training (to calibrate the noise) and
after it (to report the guarantee); nothing here touches TensorFlow, so
configs and reports can import it (dp_accounting needs NumPy and SciPy only).

One run is described by a `Mechanism`: a Gaussian mechanism whose noise has
standard deviation `noise_multiplier` (z) times the clip norm C of each
participant's contribution, applied to a sample of participants at each of
`steps` compositions (rounds, or rounds x local steps). `epsilon` gives its ε
at its δ from `dp_accounting`'s RDP accountant (Mironov 2017), composed over
the steps and converted to (ε, δ) with the accountant's own conversion, over
`ORDERS`: dp_accounting's `DEFAULT_RDP_ORDERS` (1.1 to 10.9 in steps of 0.1,
the integers 11 to 63, then 128, 256, 512, 1024), fine near 1 where small-ε
guarantees are found.

Sampling and the neighbouring relation (what "one participant's data" may
differ in). The three samplings give three accounting rules:

  poisson  each participant joins each step independently with probability
           q = m / N (m the expected sample size): `PoissonSampledDpEvent`
           under add-or-remove-one. The sum of contributions clipped to C
           changes by at most C when one participant is added or removed, so
           the event's noise multiplier is z.
  fixed    a sample of exactly m of the N participants, drawn uniformly
           without replacement each step (what `tff_common.program`'s sampler
           does): `SampledWithoutReplacementDpEvent(N, m, ...)`, which
           dp_accounting supports under replace-one only (Wang, Balle and
           Kasiviswanathan 2019). The ε reported is replace-one ε: two data
           sets are neighbours when they have the same N participants and
           differ in the data of one of them; it protects what a participant's
           data is, not whether the participant took part (N is public).
           Replacing one contribution moves the sum by up to 2C, not C, so the
           event's noise multiplier is z / 2; accounting it as z would
           understate ε. Replace-one ε is not comparable with add-or-remove ε
           one for one: an add-or-remove guarantee ε implies a replace-one
           guarantee of about 2ε.
  all      every participant at every step (q = 1): `GaussianDpEvent(z)` under
           add-or-remove-one, with no amplification by sampling.

Also here: `calibrate_noise_multiplier` (the smallest z for a target ε),
`default_delta` (δ < 1/N), the per-bank accounting of DP-SGD inside banks
(`per_bank_epsilons`), and `Guarantee` / `NONE`, the value that reports and
summary.json carry.
"""

import dataclasses
import math
import numbers
from collections.abc import Callable
from collections.abc import Mapping
from typing import Optional

import dp_accounting
from dp_accounting import rdp

from tff_common import checks

SAMPLINGS = ('poisson', 'fixed', 'all')
ORDERS = tuple(rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS)
ACCOUNTANT = 'RDP'
ADD_OR_REMOVE_ONE = 'add-or-remove-one'
REPLACE_ONE = 'replace-one'

# Calibration searches z in [_MIN_NOISE, _MAX_NOISE]: a target that needs more
# noise than 1000 times the clip norm is reported as unreachable (such noise
# would swamp any model long before).
_MIN_NOISE = 1e-3
_MAX_NOISE = 1e3
# The calibrated z's ε lies in [(1 - _CALIBRATION_TOLERANCE) * target, target].
_CALIBRATION_TOLERANCE = 0.01


def _integer(flag: str, value, minimum: int):
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    checks.fail(flag, value, f'an integer >= {minimum}')
  checks.at_least(flag, value, minimum)


def _check_delta(flag: str, delta: float):
  checks.in_range(flag, delta, 0, 1, low_open=True, high_open=True)


@dataclasses.dataclass(frozen=True)
class Mechanism:
  """One run of a sampled Gaussian mechanism, as the accountant sees it.

  Attributes:
    noise_multiplier: z, the noise's standard deviation over the clip norm of
      one participant's contribution (TFF's and TF Privacy's convention).
      0: no noise, ε is infinite.
    sampling: One of `SAMPLINGS` (see the module's docstring).
    sample_size: m, participants per step; for 'poisson', the expected number
      (q = m / N); for 'all', N.
    population: N, the participants that may be sampled.
    steps: Compositions of the mechanism (rounds, or rounds x local steps).
    delta: The δ at which ε is stated.
  """
  noise_multiplier: float
  sampling: str
  sample_size: int
  population: int
  steps: int
  delta: float

  def check(self, flags: Optional[Mapping[str, str]] = None):
    """Raises `errors.InputError` naming the first field out of range.

    Args:
      flags: The flag each field comes from, where its name differs (e.g.
        {'sample_size': 'clients_per_round'}), so the message names the flag
        the user set.
    """
    flags = flags or {}

    def flag(field):
      return flags.get(field, field)

    checks.in_range(flag('noise_multiplier'), self.noise_multiplier, 0, math.inf,
                    high_open=True)
    checks.one_of(flag('sampling'), self.sampling, SAMPLINGS)
    _integer(flag('population'), self.population, 1)
    _integer(flag('sample_size'), self.sample_size, 1)
    if self.sample_size > self.population:
      checks.fail(flag('sample_size'), self.sample_size,
                  f'an integer from 1 to {self.population} (the population)')
    if self.sampling == 'all' and self.sample_size != self.population:
      checks.fail(flag('sample_size'), self.sample_size,
                  f'{self.population} (the population): every participant takes part '
                  "under sampling 'all'")
    _integer(flag('steps'), self.steps, 1)
    _check_delta(flag('delta'), self.delta)

  @property
  def sampling_probability(self) -> float:
    """q: the chance that a given participant is in a given step's sample."""
    return self.sample_size / self.population

  @property
  def neighbouring_relation(self) -> str:
    """What the reported ε protects: `REPLACE_ONE` under 'fixed', else
    `ADD_OR_REMOVE_ONE` (see the module's docstring)."""
    return REPLACE_ONE if self.sampling == 'fixed' else ADD_OR_REMOVE_ONE

  def dp_event(self) -> dp_accounting.DpEvent:
    """The whole run as one dp_accounting event (all steps composed)."""
    z = float(self.noise_multiplier)
    if self.sampling == 'poisson':
      step = dp_accounting.PoissonSampledDpEvent(
          self.sampling_probability, dp_accounting.GaussianDpEvent(z))
    elif self.sampling == 'fixed':
      # Replace-one sensitivity of a sum of contributions clipped to C is 2C.
      step = dp_accounting.SampledWithoutReplacementDpEvent(
          self.population, self.sample_size, dp_accounting.GaussianDpEvent(z / 2))
    else:
      step = dp_accounting.GaussianDpEvent(z)
    return dp_accounting.SelfComposedDpEvent(step, self.steps)


def epsilon(mechanism: Mechanism) -> float:
  """ε of `mechanism` at its δ (RDP accountant over `ORDERS`); `math.inf` when
  z = 0. Checks `mechanism` first (`errors.InputError`)."""
  mechanism.check()
  if mechanism.noise_multiplier == 0:
    return math.inf
  relation = (dp_accounting.NeighboringRelation.REPLACE_ONE
              if mechanism.neighbouring_relation == REPLACE_ONE
              else dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
  accountant = rdp.RdpAccountant(ORDERS, relation)
  accountant.compose(mechanism.dp_event())
  return float(accountant.get_epsilon(mechanism.delta))


def _smallest_noise(epsilon_of: Callable[[float], float], target_epsilon: float,
                    delta: float) -> float:
  """The smallest z with target * (1 - tolerance) <= ε(z) <= target, for an ε
  that falls continuously as z grows.

  Brackets z in [lo, hi] with ε(lo) > target >= ε(hi), then narrows the
  bracket by regula falsi on log ε against log z (the Illinois variant, which
  keeps both ends moving), falling back to bisection: 4 to 6 ε evaluations
  in the cases measured, where bisection takes twenty-odd; that matters under
  'fixed' sampling (~0.5 s each).
  """
  checks.positive('target_epsilon', target_epsilon)
  if math.isinf(target_epsilon):
    checks.fail('target_epsilon', target_epsilon, 'a finite number > 0')

  def log_gap(z):  # log(ε(z) / target): > 0 too little noise, <= 0 enough
    value = epsilon_of(z)
    return math.log(value / target_epsilon) if value > 0 else -math.inf

  z = 1.0
  gap = log_gap(z)
  if gap > 0:  # z = 1 is too little noise: grow it until it is enough
    lo, lo_gap = z, gap
    while True:
      if lo >= _MAX_NOISE:
        floor = target_epsilon * math.exp(lo_gap)
        checks.fail('target_epsilon', target_epsilon,
                    f'a number >= {floor:.3g}, the ε of the most noise calibration tries '
                    f'(z={_MAX_NOISE:g}) at δ={_delta_text(delta)}')
      z = min(lo * 4, _MAX_NOISE)
      gap = log_gap(z)
      if gap <= 0:
        hi, hi_gap = z, gap
        break
      lo, lo_gap = z, gap
  else:  # z = 1 is enough: shrink it until it is not
    hi, hi_gap = z, gap
    while True:
      if hi <= _MIN_NOISE:
        return hi  # a target this loose needs (almost) no noise
      z = max(hi / 4, _MIN_NOISE)
      gap = log_gap(z)
      if gap > 0:
        lo, lo_gap = z, gap
        break
      hi, hi_gap = z, gap

  # Invariant: ε(lo) > target >= ε(hi). Stop when ε(hi) is close enough.
  close_enough = math.log1p(-_CALIBRATION_TOLERANCE)
  side = 0
  for _ in range(200):
    if hi_gap >= close_enough:
      return hi
    u_lo, u_hi = math.log(lo), math.log(hi)
    if math.isfinite(lo_gap) and math.isfinite(hi_gap) and lo_gap != hi_gap:
      u = u_hi - hi_gap * (u_hi - u_lo) / (hi_gap - lo_gap)
    else:
      u = (u_lo + u_hi) / 2
    if not u_lo < u < u_hi or hi / lo < 1 + 1e-12:
      u = (u_lo + u_hi) / 2
    z = math.exp(u)
    gap = log_gap(z)
    if gap > 0:
      lo, lo_gap = z, gap
      if side == -1:
        hi_gap /= 2  # Illinois: the stale end's weight is halved
      side = -1
    else:
      hi, hi_gap = z, gap
      if side == 1:
        lo_gap /= 2
      side = 1
  return hi


def calibrate_noise_multiplier(target_epsilon: float, *, sampling: str, sample_size: int,
                               population: int, steps: int, delta: float) -> float:
  """The smallest noise multiplier z whose ε is at most `target_epsilon`.

  The returned z's ε (by `epsilon`, same arguments) lies between 0.99 x and
  1 x the target: a slightly larger z than the exact solution, never a
  smaller one (or 0.001, when even that little noise meets the target).
  Raises `errors.InputError` on a bad argument or when no z up to 1000
  reaches the target (too many steps for too small an ε).
  """
  Mechanism(0.0, sampling, sample_size, population, steps, delta).check()

  def epsilon_of(z):
    return epsilon(Mechanism(z, sampling, sample_size, population, steps, delta))

  return _smallest_noise(epsilon_of, target_epsilon, delta)


def default_delta(population: int) -> float:
  """δ for a population of N: 1/N rounded down to a power of ten, strictly
  below 1/N (604 -> 1e-3, 6040 -> 1e-4, 1000 -> 1e-4).

  δ < 1/N is the usual requirement: a mechanism that publishes one random
  participant's data whole is (0, 1/N)-DP.
  """
  _integer('population', population, 1)
  return 10.0 ** -len(str(int(population)))


def sampling_for(clients_per_round: Optional[int], population: int) -> str:
  """The sampling `tff_common.program.sample_clients` does: 'all' when every
  client takes part each round (None, or at least `population`), else 'fixed'."""
  if clients_per_round is None or clients_per_round >= population:
    return 'all'
  return 'fixed'


# ---------------------------------------------------------------------------
# DP-SGD inside banks (customer-level).


@dataclasses.dataclass(frozen=True)
class BankSteps:
  """One bank's DP-SGD: `steps` steps, each on a Poisson sample of its `rows`
  with expected size `batch_size` (q = batch_size / rows)."""
  rows: int
  batch_size: int
  steps: int


@dataclasses.dataclass(frozen=True)
class PerBank:
  """Each bank's ε and the largest: the customer-level guarantee.

  A customer's rows are in one bank only, and only that bank's DP-SGD touches
  them (everything downstream, the aggregation and the server, is
  post-processing), so a customer's ε is the bank's; the guarantee for every
  customer is the maximum over banks.
  """
  epsilons: dict[str, float]
  mechanisms: dict[str, Mechanism]

  @property
  def worst(self) -> str:
    """The bank with the largest ε (the first, in key order, on a tie)."""
    return max(self.epsilons, key=lambda bank: self.epsilons[bank])

  @property
  def epsilon(self) -> float:
    return self.epsilons[self.worst]

  def guarantee(self, *, clip_norm: Optional[float], level: str = 'customer') -> 'Guarantee':
    """The maximum over banks as a `Guarantee` (the worst bank's parameters)."""
    worst = self.worst
    return Guarantee(
        level=level, epsilon=self.epsilon, mechanism=self.mechanisms[worst],
        clip_norm=clip_norm, clipped='per-example gradients', participants='rows',
        step='step',
        note=f"the largest ε of {len(self.epsilons)} banks, bank '{worst}'")


def _bank_mechanisms(banks: Mapping[str, BankSteps], noise_multiplier: float,
                     delta: float) -> dict[str, Mechanism]:
  if not banks:
    checks.fail('banks', '{}', 'at least one bank')
  mechanisms = {}
  for name, bank in banks.items():
    mechanism = Mechanism(noise_multiplier, 'poisson', bank.batch_size, bank.rows,
                          bank.steps, delta)
    mechanism.check(flags={'sample_size': f'batch_size (bank {name!r})',
                           'population': f'rows (bank {name!r})',
                           'steps': f'steps (bank {name!r})'})
    mechanisms[name] = mechanism
  return mechanisms


def per_bank_epsilons(banks: Mapping[str, BankSteps], *, noise_multiplier: float,
                      delta: float) -> PerBank:
  """ε of each bank's DP-SGD with a shared z and δ (Poisson sampling per step).

  Poisson sampling is an assumption: batches cut from a shuffled data set
  have a fixed size, and reporting Poisson ε for them is customary (TF
  Privacy does) but can understate ε (Chua et al. 2024).
  """
  mechanisms = _bank_mechanisms(banks, noise_multiplier, delta)
  # Banks with the same (rows, batch, steps) have the same ε: compute it once.
  by_setting = {}
  epsilons = {}
  for name, mechanism in mechanisms.items():
    if mechanism not in by_setting:
      by_setting[mechanism] = epsilon(mechanism)
    epsilons[name] = by_setting[mechanism]
  return PerBank(epsilons=epsilons, mechanisms=mechanisms)


def calibrate_per_bank(target_epsilon: float, banks: Mapping[str, BankSteps], *,
                       delta: float) -> float:
  """The smallest shared z whose largest per-bank ε is at most the target
  (within 1% below it, as `calibrate_noise_multiplier`)."""
  _bank_mechanisms(banks, 0.0, delta)
  return _smallest_noise(
      lambda z: per_bank_epsilons(banks, noise_multiplier=z, delta=delta).epsilon,
      target_epsilon, delta)


# ---------------------------------------------------------------------------
# What reports carry.


def _delta_text(delta: float) -> str:
  """1e-3 for a power of ten, else 3 significant digits."""
  exponent = round(math.log10(delta))
  if math.isclose(delta, 10.0 ** exponent, rel_tol=1e-9):
    return f'1e{exponent}'
  return f'{delta:.3g}'


def _epsilon_text(value: float) -> str:
  if math.isinf(value):
    return '∞'
  return f'{value:.0f}' if value >= 1000 else f'{value:.3g}'


_SAMPLING_TEXT = {
    'poisson': ('each of {N} {who} sampled independently with probability {q:.3g} '
                'per {step} ({m} expected)'),
    'fixed': '{m} of {N} {who} per {step} sampled without replacement',
    'all': 'all {N} {who} every {step}',
}


@dataclasses.dataclass(frozen=True)
class Guarantee:
  """A run's differential-privacy guarantee, for progress lines, report.md and
  summary.json.

  Attributes:
    level: Whose privacy: 'user', 'bank', 'customer', ...
    epsilon: ε at `mechanism.delta` (may be `math.inf`).
    mechanism: The mechanism accounted (for per-bank DP-SGD, the worst bank's).
    clip_norm: C, the norm contributions are clipped to (None: not stated).
    clipped: What is clipped and noised: 'updates', 'per-example gradients'.
    participants: What is sampled, plural: 'users', 'banks', 'rows'.
    step: One composition, singular: 'round', 'step'.
    note: Appended to the text (e.g. which bank is the worst).
    adaptive: None under a fixed clip; under adaptive clipping
      (`tff_common.dp`), a JSON-ready dict: 'target_quantile',
      'initial_clip', 'learning_rate', 'value_noise_multiplier' (the
      updates' z) and 'clipped_count_stddev' (sigma_b). The mechanism's
      noise multiplier is then the total z the two releases share, the one
      accounted; `clip_norm` is None (the clip moves).
  """
  level: str
  epsilon: float
  mechanism: Mechanism
  clip_norm: Optional[float] = None
  clipped: str = 'updates'
  participants: str = 'users'
  step: str = 'round'
  note: str = ''
  adaptive: Optional[Mapping] = None

  private = True

  def __post_init__(self):
    if not self.level or self.level == 'none':
      raise ValueError(f'level must name whose privacy is protected, got {self.level!r}')
    self.mechanism.check()

  @classmethod
  def of(cls, mechanism: Mechanism, *, level: str, **details) -> 'Guarantee':
    """The guarantee of `mechanism` (ε by `epsilon`); `details` are the other
    attributes."""
    return cls(level=level, epsilon=epsilon(mechanism), mechanism=mechanism, **details)

  def to_json(self) -> dict:
    """A JSON-ready dict; `NONE.to_json()` shares its first key.

      differential_privacy    '<level>-level' ('none' for NONE)
      epsilon                 a number, or the string 'inf'
      delta                   a number
      accountant              'RDP' (dp_accounting, `ORDERS`)
      neighbouring_relation   'add-or-remove-one' or 'replace-one'
      noise_multiplier        z
      clip_norm               C, or null
      clipped                 'updates', 'per-example gradients', ...
      sampling                'poisson', 'fixed' or 'all'
      sample_size, population m and N (m expected, under 'poisson')
      participants            what is sampled: 'users', 'rows', ...
      steps, step             how many compositions, and of what: 100, 'round'
      note                    '' or a remark (which bank is the worst)
      adaptive_clipping       only under adaptive clipping: `adaptive`
    """
    m = self.mechanism
    adaptive = {} if self.adaptive is None else {'adaptive_clipping': dict(self.adaptive)}
    return {
        'differential_privacy': f'{self.level}-level',
        'epsilon': 'inf' if math.isinf(self.epsilon) else float(self.epsilon),
        'delta': float(m.delta),
        'accountant': ACCOUNTANT,
        'neighbouring_relation': m.neighbouring_relation,
        'noise_multiplier': float(m.noise_multiplier),
        'clip_norm': None if self.clip_norm is None else float(self.clip_norm),
        'clipped': self.clipped,
        'sampling': m.sampling,
        'sample_size': int(m.sample_size),
        'population': int(m.population),
        'participants': self.participants,
        'steps': int(m.steps),
        'step': self.step,
        'note': self.note,
        **adaptive,
    }

  def to_text(self) -> str:
    """One line, e.g. "user-level (ε=2.95, δ=1e-3): Gaussian noise z=1.1 on
    updates clipped to 0.5, 50 of 604 users per round sampled without
    replacement, 100 rounds, RDP accountant, replace-one"."""
    m = self.mechanism
    clip = (f'{self.clipped} clipped to {self.clip_norm:g}' if self.clip_norm is not None
            else f'clipped {self.clipped}')
    if self.adaptive is not None:
      a = self.adaptive
      clip = (f'{self.clipped} clipped adaptively (from {a["initial_clip"]:g} toward their '
              f'{a["target_quantile"]:g} norm quantile, Andrew et al. 2021; z shared: '
              f'{a["value_noise_multiplier"]:.3g} on the updates, the clipped count\'s '
              f'sigma {a["clipped_count_stddev"]:.3g})')
    sampled = _SAMPLING_TEXT[m.sampling].format(
        N=m.population, m=m.sample_size, q=m.sampling_probability, who=self.participants,
        step=self.step)
    steps = f'{m.steps} {self.step}{"" if m.steps == 1 else "s"}'
    text = (f'{self.level}-level (ε={_epsilon_text(self.epsilon)}, δ={_delta_text(m.delta)}): '
            f'Gaussian noise z={m.noise_multiplier:.3g} on {clip}, {sampled}, {steps}, '
            f'{ACCOUNTANT} accountant, {m.neighbouring_relation}')
    return f'{text}; {self.note}' if self.note else text


@dataclasses.dataclass(frozen=True)
class NoPrivacy:
  """A run without differential privacy (`NONE`)."""

  private = False

  def to_json(self) -> dict:
    return {'differential_privacy': 'none'}

  def to_text(self) -> str:
    return 'no differential privacy'


NONE = NoPrivacy()


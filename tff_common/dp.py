"""Differential privacy of client updates: the settings and the DP aggregator.

Client-level DP (McMahan et al. 2018, "Learning differentially private
recurrent language models"): each sampled client's update is clipped to L2
norm `dp_clip` on the client; the server adds Gaussian noise of standard
deviation `noise_multiplier * dp_clip` to the sum and divides by the
expected number of clients per round (the uniform mean TFF's DP aggregators
compute: the weights are ignored, because a weight would scale one client's
influence beyond the clip). The guarantee is about what the aggregate, and so
the released model, reveals of one client's data; its epsilon is computed by
`tff_common.privacy` from the noise, the sampling and the rounds
(`client_level_guarantee`). Under the program's default fixed-size sampling
that epsilon is replace-one (it protects what a client's data is, not whether
it took part); under `--client_sampling=poisson` it is add-or-remove-one, and
much smaller for the same noise.

Where it runs and whom it protects against: clipping runs on the client, the
noise on the server (central DP). The server itself is trusted to add the
noise; it still sees each clipped update unless the sum is secure
(`--aggregator=secure`, composed below), in which case it sees only the
clipped sum plus its own noise.

The noise is drawn with `tf.random.stateless_normal` from a seed held in the
aggregator's state, advanced every round: the state is checkpointed with the
rest of the learning process, so a resumed run draws the same noise as an
uninterrupted one (TFF's own `DifferentiallyPrivateFactory.gaussian_fixed`
draws from an unseeded generator).

Compositions (`build_dp_aggregator`): the clipped records may be summed as
float32 (`mean`), by secure aggregation (`secure`: every coordinate of a
clipped record lies in [-clip, clip], the secure sum's bound), or quantized
(`compressed`: the quantization happens after clipping, on the client; its
stochastic rounding is unbiased but may raise a record's norm slightly above
the clip, by at most one quantization step per coordinate, which the
accounting does not cover: say so when reporting), or top-k sparsified
(`topk`: after clipping, on the client; dropping coordinates cannot raise a
record's norm, so the clip bound holds exactly). Random-k (`randk`) is refused:
its n / k rescaling raises a record's norm up to n / k times the clip
(`tff_common.sparsification`). Robust aggregators
(`robust`, `median`, `trimmed_mean`, `filtered_mean`) are refused with DP: their output is not
a clipped sum, whose sensitivity the accounting assumes.

Adaptive clipping (`dp_adaptive_quantile`; Andrew et al. 2021, "Differentially
private learning with adaptive clipping", as TFF's
`DifferentiallyPrivateFactory.gaussian_adaptive` builds it): `dp_clip` is
only the first round's clip; each round every client also reports whether its
update's norm was at most the clip (a bit, shifted to +-1/2), the server adds
Gaussian noise of standard deviation sigma_b to their sum and moves the clip
geometrically (factor exp(-lr (fraction unclipped - quantile))) toward the
quantile of the update norms. The count is a second Gaussian release of the
same clients, with sensitivity 1/2, so the run's noise multiplier z (given or
calibrated; what `tff_common.privacy` accounts) is split: the updates get
z_value = (z^-2 - (2 sigma_b)^-2)^(-1/2) (`adaptive_noise`), which makes the
pair of releases exactly as private as one Gaussian release at z. sigma_b is
`CLIPPED_COUNT_STDDEV` x clients per round (TFF's and the paper's default), and
z must stay below 2 sigma_b. Both noises are seeded from the state like the
fixed clip's, and the current clip is in the state too: a resumed run is
bit-identical to an uninterrupted one. Composes with `mean`, `compressed` and
`topk`; `secure` is refused (its bound is a fixed clip).
"""

import collections
import dataclasses
from typing import Optional

from tff_common import aggregation
from tff_common import checks

# Aggregators whose sum DP can be composed with.
COMPOSABLE = ('mean', 'secure', 'compressed', 'topk')
# Adaptive clipping: the clipped count's noise, as a fraction of the clients per
# round (Andrew et al. 2021 and TFF's default: the fraction unclipped is then
# known to about +-0.05 a round).
CLIPPED_COUNT_STDDEV = 0.05


@dataclasses.dataclass(frozen=True)
class DPConfig:
  """Differential-privacy flags (off unless a noise multiplier or a target is given).

  Attributes:
    dp_noise_multiplier: z, the Gaussian noise's standard deviation over the
      clip norm; 0 with no `target_epsilon`: no differential privacy.
    dp_clip: The L2 bound each client's update (or, for DP-SGD, each
      example's gradient) is clipped to.
    target_epsilon: If set, the noise multiplier is calibrated before training
      so that the run's epsilon at `dp_delta` is at most this
      (`tff_common.privacy.calibrate_noise_multiplier`); `dp_noise_multiplier`
      must then be left at 0.
    dp_delta: The delta of the guarantee; None: below 1/population
      (`tff_common.privacy.default_delta`).
    dp_adaptive_quantile: None: the clip is `dp_clip` throughout. Else
      adaptive clipping (see the module docstring): the clip starts at
      `dp_clip` and follows this quantile of the clients' update norms (0.5:
      the median), which costs part of the noise.
    dp_adaptive_lr: How fast the adaptive clip moves: at most a factor
      exp(dp_adaptive_lr) a round.
  """
  dp_noise_multiplier: float = 0.0
  dp_clip: float = 1.0
  target_epsilon: Optional[float] = None
  dp_delta: Optional[float] = None
  dp_adaptive_quantile: Optional[float] = None
  dp_adaptive_lr: float = 0.2

  def check(self):
    checks.non_negative('dp_noise_multiplier', self.dp_noise_multiplier)
    checks.positive('dp_clip', self.dp_clip)
    if self.target_epsilon is not None:
      checks.positive('target_epsilon', self.target_epsilon)
      if self.dp_noise_multiplier:
        checks.fail('target_epsilon', self.target_epsilon,
                    'no --dp_noise_multiplier with it (the target calibrates the noise)')
    if self.dp_delta is not None:
      checks.in_range('dp_delta', self.dp_delta, 0, 1, low_open=True, high_open=True)
    if self.dp_adaptive_quantile is not None:
      checks.in_range('dp_adaptive_quantile', self.dp_adaptive_quantile, 0, 1, low_open=True,
                      high_open=True)
      if not self.dp_enabled:
        checks.fail('dp_adaptive_quantile', self.dp_adaptive_quantile,
                    'unset without --dp_noise_multiplier or --target_epsilon (adaptive '
                    'clipping is part of differential privacy)')
    checks.positive('dp_adaptive_lr', self.dp_adaptive_lr)

  @property
  def dp_enabled(self) -> bool:
    return self.dp_noise_multiplier > 0 or self.target_epsilon is not None


def check_composable(aggregator: aggregation.AggregatorConfig):
  """Refuses an aggregator DP cannot be composed with (see the module docstring)."""
  if aggregator.aggregator not in COMPOSABLE:
    checks.fail('aggregator', aggregator.aggregator,
                f'one of {", ".join(COMPOSABLE)} with differential privacy (a robust '
                "aggregator's output is not a clipped sum, whose sensitivity the "
                'accounting assumes)')
  # The jobs' configs are both an AggregatorConfig and a DPConfig.
  if getattr(aggregator, 'dp_adaptive_quantile', None) is not None:
    _check_adaptive_composable(aggregator.aggregator)


def _check_adaptive_composable(name: str):
  if name == 'secure':
    checks.fail('aggregator', name,
                'not secure with --dp_adaptive_quantile (the secure sum\'s bound is a fixed '
                'clip; adaptive clipping moves it): use a fixed --dp_clip')


def adaptive_noise(noise_multiplier: float, clients_per_round: float) -> tuple[float, float]:
  """(z_value, sigma_b): how adaptive clipping splits the run's noise multiplier z.

  sigma_b = `CLIPPED_COUNT_STDDEV` x clients_per_round is the noise on the
  count of unclipped clients (each contributes +-1/2: sensitivity 1/2, noise
  multiplier 2 sigma_b); the updates get z_value = (z^-2 - (2 sigma_b)^-2)^-1/2,
  so that 1/z^2 = 1/z_value^2 + 1/(2 sigma_b)^2: the two releases together
  are one Gaussian mechanism with noise multiplier z, which is what the
  accountant is given. z = 0 (clipping only): (0, 0).

  Raises `errors.InputError` when z >= 2 sigma_b (the count alone would use
  more than the whole budget).
  """
  if noise_multiplier == 0:
    return 0.0, 0.0
  sigma_b = CLIPPED_COUNT_STDDEV * float(clients_per_round)
  if noise_multiplier >= 2 * sigma_b:
    checks.fail('dp_noise_multiplier', round(noise_multiplier, 4),
                f'a z below {2 * CLIPPED_COUNT_STDDEV:g} x clients per round = {2 * sigma_b:.3g} with '
                '--dp_adaptive_quantile (the clipped count needs its own noise; z may be the '
                'one --target_epsilon calibrated): use a fixed --dp_clip or more clients per '
                'round')
  return (noise_multiplier ** -2 - (2 * sigma_b) ** -2) ** -0.5, sigma_b


def build_dp_aggregator(*, noise_multiplier: float, clip: float, clients_per_round: float,
                        aggregator: aggregation.AggregatorConfig, seed: int,
                        adaptive_quantile: Optional[float] = None, adaptive_lr: float = 0.2):
  """The unweighted DP mean: clip on clients, sum, Gaussian noise, divide by K.

  Its process's `next` has the federated type
  `(<S@SERVER, {V}@CLIENTS> -> <state=S@SERVER, result=V@SERVER, measurements=M@SERVER>)`:
  each client clips its value V to L2 norm `clip`; the clipped values are
  summed by `aggregator`'s sum (float32, secure or quantized); the SERVER adds
  N(0, (noise_multiplier * clip)^2) to every coordinate with the seed in S,
  divides by `clients_per_round`, and advances the seed.

  With `adaptive_quantile` (adaptive clipping, see the module docstring) the
  clip in S starts at `clip`; each client also sends whether its norm was at
  most the clip, the SERVER sums those with N(0, sigma_b^2) noise, moves the
  clip toward the quantile, and the values' noise is z_value times the
  round's clip (`adaptive_noise`). M then holds the round's clip
  (`dp_query_metrics/clip`).

  Args:
    noise_multiplier: z >= 0 (0: clipping only), the one the run's epsilon is
      accounted at.
    clip: The L2 clip norm (adaptive: the first round's).
    clients_per_round: The denominator: the round's (expected) client count.
    aggregator: How the clipped values are summed (one of `COMPOSABLE`).
    seed: Seeds the noise of the first round (the run's seed).
    adaptive_quantile: None: fixed clipping; else the target fraction of
      unclipped clients, in (0, 1).
    adaptive_lr: The adaptive clip's geometric learning rate.
  """
  import tensorflow_federated as tff
  import tensorflow_privacy as tfp

  check_composable(aggregator)
  if adaptive_quantile is not None:
    _check_adaptive_composable(aggregator.aggregator)
  if aggregator.aggregator == 'secure':
    record_sum = tff.aggregators.SecureSumFactory(upper_bound_threshold=float(clip))
  elif aggregator.aggregator == 'compressed':
    record_sum = tff.aggregators.EncodedSumFactory.quantize_above_threshold(
        quantization_bits=int(aggregator.quantization_bits),
        threshold=int(aggregator.compression_threshold))
  elif aggregator.aggregator == 'topk':
    from tff_common import sparsification
    record_sum = sparsification.TopKSumFactory(
        fraction=aggregator.keep_fraction, threshold=int(aggregator.compression_threshold))
  else:
    record_sum = None
  if adaptive_quantile is None:
    record_query = seeded_gaussian_sum_query(
        l2_norm_clip=float(clip), stddev=float(noise_multiplier * clip), seed=int(seed))
  else:
    value_noise, count_stddev = adaptive_noise(noise_multiplier, clients_per_round)
    record_query = _seeded_adaptive_query_class()(
        initial_l2_norm_clip=float(clip), noise_multiplier=float(value_noise),
        target_unclipped_quantile=float(adaptive_quantile), learning_rate=float(adaptive_lr),
        clipped_count_stddev=float(count_stddev),
        expected_num_records=float(clients_per_round), seed=int(seed))
  query = tfp.NormalizedQuery(record_query, denominator=float(clients_per_round))
  return tff.aggregators.DifferentiallyPrivateFactory(query, record_aggregation_factory=record_sum)


def _seeded_query_class():
  import dp_accounting
  import tensorflow as tf
  import tensorflow_privacy as tfp

  class _SeededGaussianSumQuery(tfp.GaussianSumQuery):
    """`tfp.GaussianSumQuery` whose noise comes from a seed in its global state."""

    _GlobalState = collections.namedtuple('_GlobalState', ['l2_norm_clip', 'stddev', 'seed'])

    def __init__(self, *, l2_norm_clip: float, stddev: float, seed: int, stream: int = 0):
      super().__init__(l2_norm_clip, stddev)
      self._seed = seed
      self._stream = stream

    def make_global_state(self, l2_norm_clip, stddev):
      # The seed is (run seed, round): its second component advances every round.
      return self._GlobalState(tf.cast(l2_norm_clip, tf.float32), tf.cast(stddev, tf.float32),
                               tf.constant([self._seed, 0], tf.int64))

    def get_noised_result(self, sample_state, global_state):
      leaves = tf.nest.flatten(sample_state)
      noised = []
      for index, leaf in enumerate(leaves):
        # One independent stream per tensor, per round (and per query: the
        # adaptive clip's count is stream 1, far from any tensor index).
        seed = tf.stack([global_state.seed[0],
                         global_state.seed[1] * 1_000_003 + self._stream * 500_000 + index])
        noise = tf.random.stateless_normal(tf.shape(leaf), seed=seed, dtype=leaf.dtype)
        noised.append(leaf + tf.cast(global_state.stddev, leaf.dtype) * noise)
      result = tf.nest.pack_sequence_as(sample_state, noised)
      new_state = global_state._replace(seed=global_state.seed + tf.constant([0, 1], tf.int64))
      event = dp_accounting.GaussianDpEvent(global_state.stddev / global_state.l2_norm_clip)
      return result, new_state, event

  return _SeededGaussianSumQuery


def seeded_gaussian_sum_query(*, l2_norm_clip: float, stddev: float, seed: int,
                              stream: int = 0):
  """A Gaussian sum query (`tfp.GaussianSumQuery`) with resumable, seeded noise."""
  return _seeded_query_class()(l2_norm_clip=l2_norm_clip, stddev=stddev, seed=seed,
                               stream=stream)


def _seeded_adaptive_query_class():
  import dp_accounting
  import tensorflow as tf
  import tensorflow_privacy as tfp

  class _SeededAdaptiveClipSumQuery(tfp.QuantileAdaptiveClipSumQuery):
    """`tfp.QuantileAdaptiveClipSumQuery` (geometric) whose two noises are seeded.

    TF Privacy's query draws both from unseeded generators and rebuilds the
    sum query's state every round; here both inner queries are seeded
    (streams 0 and 1 of the run's seed) and the round's new clip is set in the
    sum state that already advanced its seed.
    """

    def __init__(self, *, initial_l2_norm_clip, noise_multiplier, target_unclipped_quantile,
                 learning_rate, clipped_count_stddev, expected_num_records, seed):
      super().__init__(initial_l2_norm_clip, noise_multiplier, target_unclipped_quantile,
                       learning_rate, clipped_count_stddev, expected_num_records,
                       geometric_update=True)
      self._sum_query = seeded_gaussian_sum_query(
          l2_norm_clip=initial_l2_norm_clip, stddev=noise_multiplier * initial_l2_norm_clip,
          seed=seed)
      # The fraction of unclipped records, as the estimator builds it (a sum
      # of +-1/2 per record over the expected count), with seeded noise.
      self._quantile_estimator_query._below_estimate_query = tfp.NormalizedQuery(
          seeded_gaussian_sum_query(l2_norm_clip=0.5, stddev=clipped_count_stddev, seed=seed,
                                    stream=1),
          denominator=expected_num_records)

    def get_noised_result(self, sample_state, global_state):
      noised, sum_state, sum_event = self._sum_query.get_noised_result(
          sample_state.sum_state, global_state.sum_state)
      new_clip, quantile_state, quantile_event = (
          self._quantile_estimator_query.get_noised_result(
              sample_state.quantile_estimator_state, global_state.quantile_estimator_state))
      new_clip = tf.maximum(new_clip, 0.0)
      sum_state = sum_state._replace(l2_norm_clip=new_clip,
                                     stddev=new_clip * global_state.noise_multiplier)
      new_state = self._GlobalState(global_state.noise_multiplier, sum_state, quantile_state)
      return noised, new_state, dp_accounting.ComposedDpEvent([sum_event, quantile_event])

  return _SeededAdaptiveClipSumQuery


def client_level_guarantee(config: DPConfig, *, level: str, participants: str, population: int,
                           clients_per_round: Optional[int], rounds: int,
                           client_sampling: str = 'fixed'):
  """The noise multiplier of a client-level DP run and its guarantee.

  With `target_epsilon`, the noise multiplier is calibrated for these rounds
  and this sampling (before training: the noise depends on it); otherwise it
  is `dp_noise_multiplier`. The accounting follows the program's sampler
  (`tff_common.program.sample_clients`): every client each round, a
  fixed-size sample without replacement, or Poisson sampling.

  Under adaptive clipping the noise multiplier is the total z that the
  updates and the clipped count share (`adaptive_noise`): the accountant's,
  and what `build_dp_aggregator` takes; the guarantee states the split.

  Returns:
    (noise multiplier, `privacy.Guarantee`), or (0.0, `privacy.NONE`) when
    `config` asks for no differential privacy.
  """
  from tff_common import privacy

  if not config.dp_enabled:
    return 0.0, privacy.NONE
  sampling = privacy.sampling_for(clients_per_round, population)
  if sampling == 'fixed' and client_sampling == 'poisson':
    sampling = 'poisson'
  sample_size = population if sampling == 'all' else int(clients_per_round)
  delta = config.dp_delta if config.dp_delta is not None else privacy.default_delta(population)
  if config.target_epsilon is not None:
    noise_multiplier = privacy.calibrate_noise_multiplier(
        config.target_epsilon, sampling=sampling, sample_size=sample_size,
        population=population, steps=rounds, delta=delta)
  else:
    noise_multiplier = config.dp_noise_multiplier
  mechanism = privacy.Mechanism(noise_multiplier, sampling, sample_size, population, rounds, delta)
  mechanism.check({'sample_size': 'clients_per_round', 'noise_multiplier': 'dp_noise_multiplier',
                   'delta': 'dp_delta', 'steps': 'rounds'})
  if config.dp_adaptive_quantile is None:
    return noise_multiplier, privacy.Guarantee.of(
        mechanism, level=level, clip_norm=config.dp_clip, clipped='updates',
        participants=participants, step='round')
  # Adaptive clipping: the same mechanism (z is the pair's total), its split
  # stated; refused here, before training, when z leaves the count no room.
  value_noise, count_stddev = adaptive_noise(noise_multiplier, sample_size)
  adaptive = {'target_quantile': config.dp_adaptive_quantile, 'initial_clip': config.dp_clip,
              'learning_rate': config.dp_adaptive_lr, 'value_noise_multiplier': value_noise,
              'clipped_count_stddev': count_stddev}
  return noise_multiplier, privacy.Guarantee.of(
      mechanism, level=level, clip_norm=None, clipped='updates', participants=participants,
      step='round', adaptive=adaptive)

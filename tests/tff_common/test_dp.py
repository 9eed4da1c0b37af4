"""tff_common.dp: the DP settings, the seeded DP aggregator and the run's guarantee."""

import dataclasses

import numpy as np
import pytest

from tff_common import aggregation
from tff_common import dp
from tff_common import errors
from tff_common import privacy

SIZE = 4000


def _process(name='mean', noise_multiplier=1.0, clip=0.5, clients=4, seed=3):
  import tensorflow_federated as tff
  factory = dp.build_dp_aggregator(noise_multiplier=noise_multiplier, clip=clip,
                                   clients_per_round=clients,
                                   aggregator=aggregation.AggregatorConfig(name), seed=seed)
  return factory.create(tff.TensorType(np.float32, [SIZE]))


VALUES = [np.full(SIZE, 0.001 * (i + 1), np.float32) for i in range(3)] + [
    np.full(SIZE, 10.0, np.float32)]  # the last is far above the clip


def _clipped_mean(values, clip, clients):
  return sum(v * min(1.0, clip / np.linalg.norm(v)) for v in values) / clients


@pytest.mark.parametrize('name', ['mean', 'secure'])
def test_the_dp_mean_is_the_clipped_mean_plus_noise_of_the_stated_scale(tff_context, name):
  del tff_context
  process = _process(name)
  state = process.initialize()
  first = process.next(state, VALUES)
  exact = _clipped_mean(VALUES, 0.5, 4)
  noise = first.result - exact
  # N(0, (z * clip / K)^2) per coordinate: 0.125; 4000 draws pin the sd within ~3%.
  assert abs(np.std(noise) - 0.125) < 0.01 and abs(np.mean(noise)) < 0.01
  # The noise comes from the seed in the state: the same state gives the same
  # noise (a resumed run), the next round other noise.
  again = process.next(state, VALUES)
  np.testing.assert_array_equal(first.result, again.result)
  second = process.next(first.state, VALUES)
  assert np.corrcoef(second.result - exact, noise)[0, 1] < 0.1


def test_without_noise_each_client_moves_the_mean_by_at_most_clip_over_k(tff_context):
  del tff_context
  process = _process(noise_multiplier=0.0)
  result = process.next(process.initialize(), VALUES).result
  without_outlier = _clipped_mean(VALUES[:3], 0.5, 4)
  assert np.linalg.norm(result - without_outlier) <= 0.5 / 4 + 1e-5


def test_settings_are_checked_and_robust_aggregators_are_refused():
  with pytest.raises(errors.InputError, match='--dp_clip=0'):
    dp.DPConfig(dp_clip=0).check()
  with pytest.raises(errors.InputError, match='--target_epsilon=3'):
    dp.DPConfig(dp_noise_multiplier=1.0, target_epsilon=3).check()
  with pytest.raises(errors.InputError, match="--aggregator='median'"):
    dp.check_composable(aggregation.AggregatorConfig('median'))
  assert not dp.DPConfig().dp_enabled and dp.DPConfig(target_epsilon=1).dp_enabled


def test_the_guarantee_follows_the_sampling_and_calibrates_to_the_target():
  z, none = dp.client_level_guarantee(dp.DPConfig(), level='user', participants='users',
                                      population=604, clients_per_round=50, rounds=100)
  assert (z, none.to_json()) == (0.0, {'differential_privacy': 'none'})
  z, poisson = dp.client_level_guarantee(
      dp.DPConfig(target_epsilon=5.0), level='user', participants='users', population=604,
      clients_per_round=50, rounds=20, client_sampling='poisson')
  assert poisson.mechanism.sampling == 'poisson' and 0.99 * 5 <= poisson.epsilon <= 5
  assert poisson.mechanism.delta == 1e-3  # below 1 / 604
  # The same noise under fixed-size sampling: replace-one, a larger epsilon.
  _, fixed = dp.client_level_guarantee(
      dp.DPConfig(dp_noise_multiplier=z, dp_delta=1e-4), level='user', participants='users',
      population=604, clients_per_round=50, rounds=20)
  assert fixed.mechanism.sampling == 'fixed' and fixed.epsilon > poisson.epsilon
  assert fixed.epsilon == pytest.approx(privacy.epsilon(fixed.mechanism))
  _, everyone = dp.client_level_guarantee(
      dp.DPConfig(dp_noise_multiplier=z), level='bank', participants='banks', population=5,
      clients_per_round=None, rounds=20)
  assert everyone.mechanism.sampling == 'all' and everyone.epsilon > 10


# Adaptive clipping.


def test_adaptive_clipping_splits_the_noise_as_andrew_et_al():
  # z = 1 over 50 clients: sigma_b = 0.05 * 50 = 2.5, so the count's noise
  # multiplier is 2 sigma_b = 5 and the updates get (1 - 1/25)^(-1/2).
  value, count = dp.adaptive_noise(1.0, 50)
  assert count == pytest.approx(2.5)
  assert value == pytest.approx(1.0206207261596576, rel=1e-12)
  # Together they are one Gaussian mechanism at the accounted z.
  assert value ** -2 + (2 * count) ** -2 == pytest.approx(1.0)
  assert dp.adaptive_noise(0.0, 50) == (0.0, 0.0)
  with pytest.raises(errors.InputError, match='below 0.1 x clients per round = 0.5'):
    dp.adaptive_noise(1.0, 5)


def test_adaptive_settings_are_checked():
  adaptive = dict(dp_noise_multiplier=1.0, dp_adaptive_quantile=0.5)
  dp.DPConfig(**adaptive).check()
  with pytest.raises(errors.InputError, match='--dp_adaptive_quantile=1'):
    dp.DPConfig(**{**adaptive, 'dp_adaptive_quantile': 1.0}).check()
  with pytest.raises(errors.InputError, match='--dp_adaptive_quantile=0.5: .*differential'):
    dp.DPConfig(dp_adaptive_quantile=0.5).check()
  with pytest.raises(errors.InputError, match='--dp_adaptive_lr=0'):
    dp.DPConfig(**adaptive, dp_adaptive_lr=0.0).check()

  @dataclasses.dataclass(frozen=True)
  class Config(aggregation.AggregatorConfig, dp.DPConfig):  # as each job's config
    pass

  with pytest.raises(errors.InputError, match="--aggregator='secure'"):
    dp.check_composable(Config(aggregator='secure', **adaptive))
  dp.check_composable(Config(aggregator='compressed', **adaptive))
  # z too large for the clients per round: refused before training.
  with pytest.raises(errors.InputError, match=r'--dp_noise_multiplier=3.0: .*--dp_adaptive_quantile'):
    dp.client_level_guarantee(dp.DPConfig(dp_noise_multiplier=3.0, dp_adaptive_quantile=0.5),
                              level='user', participants='users', population=604,
                              clients_per_round=20, rounds=10)


def test_an_adaptive_run_states_its_split_and_the_epsilon_of_the_total_noise():
  common = dict(level='user', participants='users', population=604, clients_per_round=50,
                rounds=100, client_sampling='poisson')
  z, fixed = dp.client_level_guarantee(dp.DPConfig(target_epsilon=10.0), **common)
  z_adaptive, adaptive = dp.client_level_guarantee(
      dp.DPConfig(target_epsilon=10.0, dp_clip=0.1, dp_adaptive_quantile=0.5), **common)
  # The same total noise and epsilon: the accountant sees one mechanism.
  assert z_adaptive == z and adaptive.epsilon == fixed.epsilon
  record = adaptive.to_json()
  assert record['clip_norm'] is None and record['epsilon'] <= 10
  split = record['adaptive_clipping']
  assert split['clipped_count_stddev'] == pytest.approx(2.5)
  assert split['value_noise_multiplier'] == pytest.approx((z ** -2 - 5.0 ** -2) ** -0.5)
  assert split['target_quantile'] == 0.5 and split['initial_clip'] == 0.1
  assert 'adaptive_clipping' not in fixed.to_json()
  assert 'clipped adaptively (from 0.1 toward their 0.5 norm quantile' in adaptive.to_text()


def _adaptive_process(*, noise_multiplier, clip, quantile=0.5, clients=20, lr=0.2):
  import tensorflow_federated as tff
  factory = dp.build_dp_aggregator(noise_multiplier=noise_multiplier, clip=clip,
                                   clients_per_round=clients, aggregator=aggregation.MEAN,
                                   seed=3, adaptive_quantile=quantile, adaptive_lr=lr)
  return factory.create(tff.TensorType(np.float32, [SIZE]))


# 20 clients whose update norms are 0.1, 0.2, ..., 2.0 (median 1.05).
SPREAD = [np.full(SIZE, 0.1 * (i + 1) / np.sqrt(SIZE), np.float32) for i in range(20)]


def _clip_of(output):
  return float(output.measurements['dp_query_metrics']['clip'])


def test_the_adaptive_clip_follows_the_quantile_and_the_noise_is_seeded(tff_context):
  del tff_context
  process = _adaptive_process(noise_multiplier=0.5, clip=0.1)
  state = process.initialize()
  first = process.next(state, SPREAD)
  # Round 1 clips at 0.1: every client is clipped, the noise is z_value * 0.1 / K.
  value, _ = dp.adaptive_noise(0.5, 20)
  noise = first.result - _clipped_mean(SPREAD, 0.1, 20)
  assert abs(np.std(noise) - value * 0.1 / 20) < 0.05 * value * 0.1 / 20
  # Resuming from a state redraws the same noise; the clip is in the state.
  np.testing.assert_array_equal(process.next(state, SPREAD).result, first.result)
  clips = [_clip_of(first)]
  output = first
  for _ in range(40):
    output = process.next(output.state, SPREAD)
    clips.append(_clip_of(output))
  # Geometric steps of at most exp(0.2) up from 0.1, then around the median.
  assert clips[0] == pytest.approx(0.1 * np.exp(0.2 * 0.5), rel=0.1)
  assert 0.6 < np.median(clips[-10:]) < 1.6

"""tff_common.dp: the DP settings, the seeded DP aggregator and the run's guarantee."""

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

"""tff_credit.dp_sgd: TFF's DP-SGD client step against its NumPy twin, clipping,
the noise's determinism and scale, aggregation, checkpoints, Poisson batches."""

import asyncio
import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import numpy_fl
from numpy_fl import dp_sgd as numpy_dp_sgd
from numpy_fl import models as numpy_models
from tff_credit import dp_sgd
from tff_credit import model

D = 40          # features: 41 coordinates of noise per step
LR = 0.1
CLIP = 1.0
B = 8           # expected batch size
Z = 1.5         # noise multiplier of the noisy process


def _build(noise_multiplier, aggregator):
  return dp_sgd.build_process(
      model.model_fn_for(model='logreg', num_features=D), client_lr=LR, server_lr=1.0,
      l2_clip=CLIP, noise_multiplier=noise_multiplier, expected_batch_size=B,
      model_aggregator=aggregator)


@pytest.fixture(scope='module')
def plain(tff_context):
  """No noise, and a uniform (unweighted) mean over banks."""
  del tff_context
  return _build(0.0, tff.aggregators.UnweightedMeanFactory())


@pytest.fixture(scope='module')
def noisy(tff_context):
  """Noise z = Z, and the weighted mean (weights steps x B)."""
  del tff_context
  return _build(Z, tff.aggregators.MeanFactory())


def _bank(n=30, seed=0):
  """Rows of very different norms, so that some per-example gradients exceed the clip."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, D)) * rng.uniform(0.05, 0.6, size=(n, 1))
  y = (rng.random(n) < 0.4).astype(np.float32)
  return x.astype(np.float32), y


def _start(process, seed=9):
  """The process's state with small random weights (so the twin does not start at 0)."""
  rng = np.random.default_rng(seed)
  weights = tff.learning.models.ModelWeights(
      trainable=[rng.normal(0, 0.1, (D, 1)).astype(np.float32),
                 np.array([0.05], np.float32)], non_trainable=[])
  return process.set_model_weights(process.initialize(), weights)


def _flat(process, state):
  kernel, bias = process.get_model_weights(state).trainable
  return np.append(kernel.ravel(), bias)


def _update(process, state, banks):
  """The round's aggregated update, initial - new (server SGD at lr 1)."""
  output = process.next(state, banks)
  return _flat(process, state) - _flat(process, output.state), output


def _tf_noise(seed):
  """The twin's noise: TF's own draws for (seed, step)."""
  return lambda step, size: dp_sgd.standard_noise(seed, step, size).numpy()


def _twin(x, y, w, batches, *, noise_multiplier, noise_seed):
  client = numpy_fl.Client(x, y, model=numpy_models.LogisticRegression())
  return numpy_dp_sgd.train(client, w, batches=batches, lr=LR, l2_clip=CLIP,
                            noise_multiplier=noise_multiplier, expected_batch_size=B,
                            noise=_tf_noise(noise_seed))


def test_noise_off_equals_the_numpy_twin_with_clipping_active(plain):
  x, y = _bank()
  batches, noise_seed = dp_sgd.poisson_sample(len(x), sampling_rate=B / len(x), steps=4, seed=3)
  state = _start(plain)
  w = _flat(plain, state)
  # Clipping must matter: at the start, some examples exceed the bound and some do not.
  norms = np.linalg.norm(numpy_dp_sgd.per_example_gradients(
      numpy_models.LogisticRegression(), w, x, y), axis=1)
  assert (norms > CLIP).sum() >= 5 and (norms < CLIP).sum() >= 5
  got, output = _update(plain, state, [dp_sgd.client_data_of(x, y, batches=batches,
                                                             noise_seed=noise_seed)])
  expected = _twin(x, y, w, batches, noise_multiplier=0.0, noise_seed=noise_seed)
  np.testing.assert_allclose(got, expected.update, atol=1e-6)
  assert np.abs(expected.update).max() > 1e-2  # the steps did move the model
  # The training loss: the mean per-example loss at each step's weights.
  logistic, weights, losses = numpy_models.LogisticRegression(), w, []
  for rows in batches:
    losses.extend(np.logaddexp(0, logistic.logits(weights, x[rows])) - y[rows] *
                  logistic.logits(weights, x[rows]))
    weights = numpy_dp_sgd.dp_sgd_step(logistic, weights, x[rows], y[rows], lr=LR,
                                       l2_clip=CLIP, noise_multiplier=0.0,
                                       expected_batch_size=B, standard_normal=np.zeros(D + 1))
  train = output.metrics['client_work']['train']
  assert train['num_examples'] == sum(len(b) for b in batches) == len(losses)
  assert train['loss'] == pytest.approx(np.mean(losses), rel=1e-5)


def test_noise_on_equals_the_twin_with_the_same_draws_empty_batch_included(noisy):
  x, y = _bank(seed=1)
  rng = np.random.default_rng(0)
  batches = [rng.choice(30, 7, replace=False), np.array([], np.int64), rng.choice(30, 10, replace=False)]
  noise_seed = np.array([12, 34], np.int64)
  state = _start(noisy)
  got, _ = _update(noisy, state, [dp_sgd.client_data_of(x, y, batches=batches,
                                                        noise_seed=noise_seed)])
  expected = _twin(x, y, _flat(noisy, state), batches, noise_multiplier=Z, noise_seed=noise_seed)
  np.testing.assert_allclose(got, expected.update, atol=1e-6)


def test_an_outlier_changes_the_update_by_at_most_lr_clip_over_b(noisy):
  x, y = _bank(seed=2, n=12)
  w_state = _start(noisy)
  w = _flat(noisy, w_state)
  # An outlier far out along a direction the model ignores (orthogonal to its
  # kernel): a huge gradient whose prediction is not saturated.
  direction = np.random.default_rng(0).normal(size=D)
  direction -= direction @ w[:-1] / (w[:-1] @ w[:-1]) * w[:-1]
  x[-1] = 1e4 * direction / np.linalg.norm(direction)
  outlier = numpy_dp_sgd.per_example_gradients(numpy_models.LogisticRegression(), w, x[-1:],
                                               y[-1:])
  assert np.linalg.norm(outlier) > 1e3 * CLIP
  seed = np.array([5, 6], np.int64)
  # The same noise seed for both: the noise cannot hide or cause the difference.
  without, _ = _update(noisy, w_state, [dp_sgd.client_data_of(
      x, y, batches=[np.arange(11)], noise_seed=seed)])
  with_outlier, _ = _update(noisy, w_state, [dp_sgd.client_data_of(
      x, y, batches=[np.arange(12)], noise_seed=seed)])
  bound = LR * CLIP / B
  assert np.linalg.norm(with_outlier - without) <= bound * (1 + 1e-4)
  assert np.linalg.norm(with_outlier - without) >= bound * (1 - 1e-3)  # clipped, not dropped


def test_the_noise_is_deterministic_in_its_seed_and_of_scale_lr_z_c_over_b(noisy, plain):
  x, y = _bank(seed=3)
  state_noisy, state_plain = _start(noisy), _start(plain)
  batch = [np.arange(0, 30, 3)]

  def update(process, state, seed):
    return _update(process, state, [dp_sgd.client_data_of(
        x, y, batches=batch, noise_seed=np.array(seed, np.int64))])[0]

  noiseless = update(plain, state_plain, [0, 0])
  first = update(noisy, state_noisy, [1, 2])
  np.testing.assert_array_equal(first, update(noisy, state_noisy, [1, 2]))
  differences = [first - noiseless] + [update(noisy, state_noisy, [1, s]) - noiseless
                                       for s in range(3, 8)]
  assert not np.allclose(differences[0], differences[1])
  # 6 seeds x 41 coordinates: the sample std is within 20% of lr·z·C/B (over 4 sigma).
  assert np.std(differences) == pytest.approx(LR * Z * CLIP / B, rel=0.2)


def test_weighted_and_uniform_means_over_banks(noisy, plain):
  (x1, y1), (x2, y2) = _bank(seed=4), _bank(seed=5, n=20)
  one = dict(batches=[np.arange(8)], noise_seed=np.array([1, 1], np.int64))
  three = dict(batches=[np.arange(5), np.arange(5, 12), np.arange(12, 20)],
               noise_seed=np.array([2, 2], np.int64))
  for process, weights in ((noisy, (1, 3)), (plain, (1, 1))):
    state = _start(process)
    bank1 = dp_sgd.client_data_of(x1, y1, **one)
    bank2 = dp_sgd.client_data_of(x2, y2, **three)
    alone1, _ = _update(process, state, [bank1])
    alone2, _ = _update(process, state, [dp_sgd.client_data_of(x2, y2, **three)])
    both, _ = _update(process, state, [bank1, bank2])
    # Weighted by steps x B (1 and 3 steps), or uniform under an unweighted aggregator.
    np.testing.assert_allclose(both, (weights[0] * alone1 + weights[1] * alone2) / sum(weights),
                               atol=1e-6)


def test_a_resumed_run_equals_an_uninterrupted_one(noisy, tmp_path):
  x, y = _bank(seed=6)
  rows = len(x)

  def round_data(round_num):
    return [dp_sgd.client_data(x, y, sampling_rate=dp_sgd.sampling_rate(rows, B),
                               steps=dp_sgd.steps_per_round(rows, B, 1), seed=100 + round_num)]

  state = noisy.initialize()
  after_one = noisy.next(state, round_data(1)).state
  uninterrupted = noisy.next(after_one, round_data(2)).state
  manager = tff.program.FileProgramStateManager(root_dir=str(tmp_path), prefix='round_')
  asyncio.run(manager.save(after_one, 1))
  restored = asyncio.run(manager.load(1, state))
  resumed = noisy.next(restored, round_data(2)).state
  np.testing.assert_array_equal(_flat(noisy, resumed), _flat(noisy, uninterrupted))
  assert not np.allclose(_flat(noisy, after_one), _flat(noisy, uninterrupted))


def test_a_bank_needs_exactly_one_noise_seed(noisy):
  x, y = _bank(seed=7)
  data = dp_sgd.client_data_of(x, y, batches=[np.arange(4)], noise_seed=np.array([1, 2]))
  data = collections.OrderedDict(batches=data['batches'],
                                 seed=tf.data.Dataset.from_tensor_slices(np.zeros((2, 2), np.int64)))
  with pytest.raises(Exception, match='exactly one noise seed'):
    noisy.next(noisy.initialize(), [data])


def test_poisson_batches_are_seeded_and_of_mean_size_q_rows():
  batches, noise_seed = dp_sgd.poisson_sample(1000, sampling_rate=0.05, steps=200, seed=11)
  again, same_seed = dp_sgd.poisson_sample(1000, sampling_rate=0.05, steps=200, seed=11)
  other, other_seed = dp_sgd.poisson_sample(1000, sampling_rate=0.05, steps=200, seed=12)
  assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
  np.testing.assert_array_equal(noise_seed, same_seed)
  assert not np.array_equal(noise_seed, other_seed)
  assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=True))
  sizes = np.array([len(b) for b in batches])
  # Mean 50, std of the mean sqrt(1000·0.05·0.95 / 200) ≈ 0.49: within 2.5 is 5 sigma.
  assert abs(sizes.mean() - 50) < 2.5
  assert sizes.std() > 3  # sizes vary, as Poisson sampling's do (binomial std ≈ 6.9)
  assert all(len(np.unique(b)) == len(b) and (b.min(initial=0) >= 0) and
             (b.max(initial=0) < 1000) for b in batches)


def test_client_data_holds_the_sampled_rows_and_the_seed():
  x = np.arange(20, dtype=np.float32).reshape(10, 2)
  y = np.arange(10, dtype=np.float32)
  data = dp_sgd.client_data(x, y, sampling_rate=0.3, steps=5, seed=4)
  batches, noise_seed = dp_sgd.poisson_sample(10, sampling_rate=0.3, steps=5, seed=4)
  got = list(data['batches'].as_numpy_iterator())
  assert len(got) == 5
  for (bx, by), rows in zip(got, batches, strict=True):
    np.testing.assert_array_equal(bx, x[rows])
    np.testing.assert_array_equal(by, y[rows][:, None])
  np.testing.assert_array_equal(list(data['seed'].as_numpy_iterator()), [noise_seed])


def test_steps_and_sampling_rate():
  assert dp_sgd.sampling_rate(200, 8) == pytest.approx(0.04)
  assert dp_sgd.steps_per_round(200, 8, 1) == 25
  assert dp_sgd.steps_per_round(200, 8, 3) == 75
  assert dp_sgd.steps_per_round(10, 10, 1) == 1
  with pytest.raises(ValueError, match='exceeds'):
    dp_sgd.sampling_rate(67, 128)
  with pytest.raises(ValueError, match='l2_clip'):
    dp_sgd.build_client_work(lambda: None, learning_rate=0.1, l2_clip=0.0, noise_multiplier=1.0,
                             expected_batch_size=8)

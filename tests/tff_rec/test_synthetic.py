"""tff_rec.synthetic's lazy population: per-user determinism, O(1) memory in the
number of users, the UserRatings/Split interface the job trains on, and a model
that learns from it."""

import tracemalloc

import numpy as np
import pytest

from tff_common import program
from tff_rec import clients
from tff_rec import synthetic


def _same_user(a, b):
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y)


def test_a_user_depends_on_seed_and_position_only():
  small = synthetic.SyntheticPopulation(1000, seed=3)
  first = small.user(7)
  large = synthetic.SyntheticPopulation(100_000, seed=3)
  for k in range(0, 100_000, 997):  # other users first, enough to cycle the cache
    large.user(k)
  _same_user(first, large.user(7))
  _same_user(first, synthetic.SyntheticPopulation(1000, seed=3).user(7))
  assert not np.array_equal(first[0], synthetic.SyntheticPopulation(1000, seed=4).user(7)[0])


def test_users_rate_20_to_100_distinct_items_with_a_test_part():
  population = synthetic.SyntheticPopulation(500, num_items=300, seed=0)
  sizes = []
  for k in range(500):
    train_items, train_stars, test_items, test_stars = population.user(k)
    items = np.concatenate([train_items, test_items])
    assert len(set(items.tolist())) == len(items)  # distinct: train and test disjoint
    assert len(test_items) >= 1 and len(train_items) >= len(test_items)
    assert items.min() >= 0 and items.max() < 300
    stars = np.concatenate([train_stars, test_stars])
    assert set(np.unique(stars).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    sizes.append(len(items))
  assert min(sizes) == 20 and max(sizes) <= 100
  assert np.median(sizes) < np.mean(sizes)  # heavy tail: most users near the minimum
  assert 3.0 < population.global_mean() < 4.0


def test_memory_does_not_grow_with_the_population():
  def held(num_users):
    tracemalloc.start()
    population = synthetic.SyntheticPopulation(num_users, num_items=500, seed=0)
    for k in range(0, num_users, num_users // 300):  # more users than the cache keeps
      population.train.items_of(k)
    ids = population.client_ids()
    _ = ids[len(ids) - 1], population.train.position(num_users)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(population._cache) <= population.CACHE_USERS
    return population.nbytes(), current, population

  small_bytes, small_traced, _ = held(1000)
  large_bytes, large_traced, large = held(100_000)
  assert small_bytes == large_bytes
  assert large_traced < small_traced + 100_000  # bytes: nothing per user of 100k
  arrays = [v for v in vars(large).values() if isinstance(v, np.ndarray)]
  assert arrays and all(a.shape[0] == 500 for a in arrays)


def test_it_reads_like_a_split_and_feeds_the_jobs_client_data():
  population = synthetic.SyntheticPopulation(50, num_items=120, seed=1)
  train = population.train
  assert len(train) == len(population.test) == 50
  assert train.users[0] == 1 and train.users[-1] == 50
  assert train.position(50) == 49
  for bad in (0, 51):
    with pytest.raises(KeyError):
      train.position(bad)
  ids = population.client_ids()
  assert len(ids) == 50 and ids[0] == '1' and ids[-1] == '50' and list(ids[:2]) == ['1', '2']
  sampled = program.sample_clients(ids, clients_per_round=5, seed=0, round_num=1)
  datasets = clients.training_data_fn(train, batch_size=4, seed=0)(sampled, 1)
  for cid, dataset in zip(sampled, datasets, strict=True):
    k = train.position(int(cid))
    rows = sum(int(batch['y'].shape[0]) for batch in dataset)
    assert rows == len(train.items_of(k))
  held = population.sample(10)
  for i, user in enumerate(held.train.users):
    _same_user((held.train.items_of(i), held.train.ratings_of(i), held.test.items_of(i),
                held.test.ratings_of(i)), population.user(int(user) - 1))


def test_fedrecon_trained_on_it_beats_the_global_mean():
  """The job's own process and client data, unchanged, 5 rounds of 10 of 200 users."""
  from tff_rec import algorithms
  from tff_rec import config as config_lib
  from tff_rec import evaluation
  from tff_rec import params as params_lib

  population = synthetic.SyntheticPopulation(200, num_items=40, seed=0, max_ratings=40)
  config = config_lib.TrainConfig(clients_per_round=10, client_lr=0.5, server_lr=8.0,
                                  recon_lr=0.3, recon_epochs=3, dim=2, batch_size=8,
                                  negatives_per_rating=0.0)
  process, layers = algorithms.build_process(population, config)
  client_data_fn = clients.training_data_fn(population.train, batch_size=config.batch_size,
                                            seed=0, num_items=population.num_items)
  state = process.initialize()
  for round_num in range(1, 6):
    sampled = program.sample_clients(population.client_ids(), clients_per_round=10, seed=0,
                                     round_num=round_num)
    state = process.next(state, client_data_fn(sampled, round_num)).state
  params = params_lib.from_weights(algorithms.trainable_weights(process, state), layers,
                                   l2=config.l2, implicit_l2=config.implicit_l2)
  held = population.sample(100)
  users = evaluation.training_user_factors(params, held, config.recon())
  rmse = evaluation.rating_metrics(params, users, held.test)['rmse']
  mean_rmse = float(np.sqrt(np.mean((held.test.ratings - population.global_mean()) ** 2)))
  assert rmse < mean_rmse - 0.05, (rmse, mean_rmse)

"""tff_common.seeding: per-client seeds are pure functions; set_seed fixes TF's shuffles."""

import numpy as np

from tff_common import seeding


def test_client_seed_is_a_pure_function_of_seed_round_and_client():
  assert seeding.client_seed(0, 3, 17) == seeding.client_seed(0, 3, 17)
  seeds = {seeding.client_seed(s, r, c) for s in (0, 1) for r in (1, 2) for c in (5, 6)}
  assert len(seeds) == 8 and all(0 <= s < 2**31 - 1 for s in seeds)
  # The value tff_rec's devices have always used: default_rng([seed, round, user]).
  assert seeding.client_seed(0, 3, 17) == int(
      np.random.default_rng([0, 3, 17]).integers(2**31 - 1))


def test_set_seed_makes_a_seeded_shuffle_independent_of_earlier_draws():
  import tensorflow as tf

  def order():
    dataset = tf.data.Dataset.range(20).shuffle(20, seed=seeding.client_seed(0, 1, 2))
    return [int(x) for x in dataset]

  seeding.set_seed(0)
  first = order()
  tf.random.set_seed(99)  # another test's leftovers
  seeding.set_seed(0)
  assert order() == first
  seeding.set_seed(1)  # TF combines the global seed with the op seed
  assert order() != first

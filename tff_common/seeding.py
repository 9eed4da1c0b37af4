"""The seeding rule of every run, both jobs alike.

1.  Every random draw of a run is a pure function of the run's seed and of where
    it happens: NumPy generators seeded with `[seed, round, client, ...]`
    (client sampling, a client's shuffle in a round, a device's sampled items),
    so a resumed run replays exactly what an uninterrupted one would have drawn.
2.  TensorFlow derives a dataset shuffle's order from the global seed and the
    shuffle's own seed, so the global seed is part of a run's definition: it is
    set to the run's seed when the run opens (`tff_common.program.open_run`),
    inside the library, never by a binary, so a test and a binary with the same
    seed train identically.
"""

import random
import sys

import numpy as np

_MAX_TF_SEED = 2**31 - 1


def set_seed(seed: int):
  """Seeds Python's and NumPy's global generators, and, if TensorFlow is
  imported, its global seed and Keras' generator of unseeded layers
  (`tf.keras.utils.set_random_seed`, which also does the first two)."""
  if 'tensorflow' in sys.modules:
    sys.modules['tensorflow'].keras.utils.set_random_seed(seed)
    return
  random.seed(seed)
  np.random.seed(seed)


def client_seed(seed: int, round_num: int, client: int) -> int:
  """The op seed of one client's shuffle in one round (rule 1): a pure
  function of the run's seed, the round and the client's number."""
  return int(np.random.default_rng([seed, round_num, client]).integers(_MAX_TF_SEED))

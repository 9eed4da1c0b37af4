"""One seed for Python, NumPy and TensorFlow."""

import os
import random

import numpy as np


def set_seed(seed: int):
  """Seeds every generator a run draws from (TF only if it is imported)."""
  os.environ['PYTHONHASHSEED'] = str(seed)
  random.seed(seed)
  np.random.seed(seed)
  import sys  # pylint: disable=g-import-not-at-top
  if 'tensorflow' in sys.modules:
    sys.modules['tensorflow'].random.set_seed(seed)

"""Settings and a subprocess runner shared by the tff_rec tests."""

import os
import subprocess
import sys

from tff_rec import config as config_lib

# The repository root: binaries run from there, as a user would.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Small enough for seconds per run, large enough to learn the synthetic ratings.
TINY = dict(clients_per_round=6, client_lr=0.2, server_lr=3.0, recon_lr=0.2, recon_epochs=3,
            dim=4, batch_size=4, rounds_per_checkpoint=1, centralized_epochs=5,
            negatives_per_rating=1.0, implicit_weight=5.0)


def tiny_config(**overrides) -> config_lib.TrainConfig:
  """The TINY training settings, with `overrides`."""
  return config_lib.TrainConfig(**{**TINY, **overrides})


def tiny_flags() -> list[str]:
  """The TINY training settings as flags of `python -m tff_rec.train`."""
  return [f'--{k}={v}' for k, v in TINY.items()]


def run_module(*args, timeout=240) -> subprocess.CompletedProcess:
  """`python -m *args` from the repository root; output captured as text."""
  return subprocess.run([sys.executable, '-m', *args], capture_output=True, text=True,
                        timeout=timeout, cwd=ROOT)

"""The settings every training run has (rounds, clients per round, checkpoint
period, seed), declared once: both jobs' TrainConfig extend `ProgramConfig`.

Plain data, no TensorFlow, so configs can be read where TF is not wanted
(a device's top-N, reports).
"""

import dataclasses
from typing import ClassVar
from typing import Optional

from tff_common import errors


@dataclasses.dataclass(frozen=True)
class ProgramConfig:
  """What every training run has; each job's TrainConfig extends it (and may
  give other defaults).

  Attributes:
    rounds: Rounds to reach in total, counting rounds of earlier (resumed) runs.
    clients_per_round: Clients sampled each round; None: all of them.
    rounds_per_checkpoint: Checkpoint period; the last round always saves.
    seed: Seeds everything random in the run (see `tff_common.seeding`).
  """
  rounds: int = 10
  clients_per_round: Optional[int] = None
  rounds_per_checkpoint: int = 1
  seed: int = 0
  # Settings a rerun may change and still continue the same experiment.
  MAY_CHANGE: ClassVar[tuple[str, ...]] = ('rounds', 'rounds_per_checkpoint')

  def check(self):
    """Raises `errors.InputError` naming the first flag out of range."""
    if self.rounds < 0:
      raise errors.InputError(f'--rounds must be 0 or more, got {self.rounds}')
    if self.clients_per_round is not None and self.clients_per_round < 1:
      raise errors.InputError(
          f'--clients_per_round must be at least 1, got {self.clients_per_round}')
    if self.rounds_per_checkpoint < 1:
      raise errors.InputError(
          f'--rounds_per_checkpoint must be at least 1, got {self.rounds_per_checkpoint}')

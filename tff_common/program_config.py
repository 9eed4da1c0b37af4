"""The settings every training run has (rounds, clients per round, checkpoint
period, seed), declared once: both jobs' TrainConfig extend `ProgramConfig`.

Plain data, no TensorFlow, so configs can be read where TF is not wanted
(a device's top-N, reports).
"""

import dataclasses
from typing import ClassVar
from typing import Optional

from tff_common import checks

CLIENT_SAMPLINGS = ('fixed', 'poisson')


@dataclasses.dataclass(frozen=True)
class ProgramConfig:
  """What every training run has; each job's TrainConfig extends it (and may
  give other defaults).

  Attributes:
    rounds: Rounds to reach in total, counting rounds of earlier (resumed) runs.
    clients_per_round: Clients sampled each round; None: all of them.
    rounds_per_checkpoint: Checkpoint period; the last round always saves.
    seed: Seeds everything random in the run (see `tff_common.seeding`).
    client_sampling: How a round's clients are drawn when `clients_per_round`
      is below the population: 'fixed', exactly that many, uniformly without
      replacement; 'poisson', each client independently with probability
      clients_per_round / population (a round's count varies). Differential
      privacy is accounted for whichever is used (`tff_common.privacy`);
      Poisson sampling gives a much smaller epsilon for the same noise.
  """
  rounds: int = 10
  clients_per_round: Optional[int] = None
  rounds_per_checkpoint: int = 1
  seed: int = 0
  client_sampling: str = 'fixed'
  # Settings a rerun may change and still continue the same experiment.
  MAY_CHANGE: ClassVar[tuple[str, ...]] = ('rounds', 'rounds_per_checkpoint')

  def check(self):
    """Raises `errors.InputError` naming the first flag out of range."""
    # A run of 0 rounds would release the untrained model as if trained.
    checks.at_least('rounds', self.rounds, 1)
    checks.optional_at_least('clients_per_round', self.clients_per_round, 1)
    checks.at_least('rounds_per_checkpoint', self.rounds_per_checkpoint, 1)
    # NumPy's generators take non-negative seeds only.
    checks.at_least('seed', self.seed, 0)
    checks.one_of('client_sampling', self.client_sampling, CLIENT_SAMPLINGS)

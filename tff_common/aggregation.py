"""The one place where both jobs choose how client updates are aggregated.

Runs on the server side of every round: the returned factory is passed as
`model_aggregator` to TFF's learning algorithm builders. Later aggregators
(differential privacy, secure sum, robust, compressed) are added to `NAMES`
here, and every job gets them through its `--aggregator` flag.
"""

import tensorflow_federated as tff

NAMES = ('mean',)


def build_aggregator(name: str, *, weighted: bool) -> tff.aggregators.AggregationFactory:
  """Returns the aggregation factory called `name`.

  Args:
    name: One of `NAMES`.
    weighted: Whether the algorithm weights client updates (e.g. by example
      count); uniform 1/K means otherwise.
  """
  if name == 'mean':
    return tff.aggregators.MeanFactory() if weighted else tff.aggregators.UnweightedMeanFactory()
  raise ValueError(f'unknown aggregator {name!r}; expected one of {", ".join(NAMES)}')

"""The one place where both jobs choose how client updates are aggregated.

Runs on the server side of every round: the returned factory is passed as
`model_aggregator` to TFF's learning algorithm builders. Later aggregators
(differential privacy, secure sum, robust, compressed) are added to `NAMES`
here, and every job gets them through its `--aggregator` flag.
"""

NAMES = ('mean',)


def build_aggregator(name: str, *, weighted: bool, ignore_weights: bool = False):
  """Returns the aggregation factory called `name`.

  The factory's process runs inside a learning process's round: its `next`
  has the federated type `(<S@SERVER, {V}@CLIENTS, {float32}@CLIENTS> ->
  <S@SERVER, V@SERVER, ...>)` when weighted (the client values V and their
  weights; 'mean' is the weighted mean) and `(<S@SERVER, {V}@CLIENTS> -> ...)`
  when not ('mean': the uniform 1/K mean).

  Returns a `tff.aggregators` factory (weighted or unweighted).

  Args:
    name: One of `NAMES`.
    weighted: Whether updates are weighted by the algorithm's client weights
      (e.g. example counts); if False, an unweighted factory (uniform 1/K).
    ignore_weights: For algorithms that only accept a weighted factory (TFF's
      FedSGD): a weighted-API factory that ignores the weights, i.e. the
      uniform 1/K mean of the textbook formula. Requires `weighted=False`.
  """
  # TFF only here, so that configs can name an aggregator without importing it.
  import tensorflow_federated as tff

  if ignore_weights and weighted:
    raise ValueError('ignore_weights asks for a uniform mean; pass weighted=False')
  if name == 'mean':
    factory = tff.aggregators.MeanFactory() if weighted else tff.aggregators.UnweightedMeanFactory()
  else:
    raise ValueError(f'unknown aggregator {name!r}; expected one of {", ".join(NAMES)}')
  if ignore_weights:
    factory = tff.aggregators.as_weighted_aggregator(factory)
  return factory

"""tff_common.audit: what the server of a round receives, read from the computation.

The issue's check for secure aggregation: in a learning process built with
`--aggregator=secure`, the model update reaches the server only through
secure sums (and so do the clients' metrics), while under the plain mean it
arrives through a plain sum of the update itself.
"""

import pytest

from tff_common import audit
from tff_credit import algorithms
from tff_credit import config as config_lib
from tff_credit import model as model_lib

# The scorecard's update: a [3, 1] kernel and a bias, as each bank sends it.
UPDATE = '<float32[3,1],float32[1]>'


def _inputs(name, algorithm):
  model_fn = model_lib.model_fn_for(model='logreg', num_features=3)
  process = algorithms.build_process(
      config_lib.AlgorithmConfig(algorithm=algorithm, aggregator=name), model_fn)
  return audit.server_inputs(process.next)


@pytest.mark.parametrize('algorithm', ['fedavg', 'fedsgd'])
def test_under_the_plain_mean_the_server_receives_each_update(tff_context, algorithm):
  del tff_context
  inputs = _inputs('mean', algorithm)
  assert audit.ServerInput('federated_sum', UPDATE) in inputs
  assert not any(i.secure for i in inputs)


@pytest.mark.parametrize('algorithm', ['fedavg', 'fedsgd'])
def test_under_secure_aggregation_only_secure_sums_reach_the_server(tff_context, algorithm):
  del tff_context
  inputs = _inputs('secure', algorithm)
  # Every value that leaves a bank goes through a secure sum: the update (as
  # 32-bit integers of its clipped range), the weights, the norm estimates'
  # counts and the training metrics.
  assert inputs and all(i.secure for i in inputs), [i for i in inputs if not i.secure]
  assert audit.ServerInput('federated_secure_sum_bitwidth', '<int64[3,1],int64[1]>') in inputs
  assert not any('float32[3,1]' in i.client_type for i in inputs)

"""NumPy federated learning: the readable engine TFF is checked and timed against.

The engine imports neither TensorFlow nor the project's TFF packages
(`tff_common`, `tff_credit`, `tff_rec`). Modules:
  models        linear (MSE) and logistic (cross-entropy) regression on a flat weight vector
  client        a client's data, full-batch gradient (FedSGD), local SGD (FedAvg)
  server        broadcast, uniform / example-weighted mean, server SGD(M)
  algorithms    FedSGD / FedAvg client work and the synchronous loop
  dp_sgd        DP-SGD client step (per-example clipping, Gaussian noise), the twin of tff_credit.dp_sgd
  asynchronous  FedBuff-style buffered asynchronous aggregation raced against the synchronous loop
  synthetic     the textbook synthetic linear regression problem, split over clients
  crosscheck/   (subpackage, imports TensorFlow) the engine against its TFF twin, round by round

`numpy_fl.crosscheck` is not imported here; `python -m numpy_fl.crosscheck` runs it.
"""

from numpy_fl.algorithms import FedAvg
from numpy_fl.algorithms import FedSGD
from numpy_fl.algorithms import global_loss
from numpy_fl.algorithms import run_round
from numpy_fl.algorithms import run_rounds
from numpy_fl.client import Client
from numpy_fl.client import ClientUpdate
from numpy_fl.models import LinearRegression
from numpy_fl.models import LogisticRegression
from numpy_fl.models import get_model
from numpy_fl.models import initial_weights
from numpy_fl.server import Server
from numpy_fl.server import aggregate

__all__ = [
    'Client',
    'ClientUpdate',
    'FedAvg',
    'FedSGD',
    'LinearRegression',
    'LogisticRegression',
    'Server',
    'aggregate',
    'get_model',
    'global_loss',
    'initial_weights',
    'run_round',
    'run_rounds',
]

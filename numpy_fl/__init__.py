"""NumPy federated learning: the readable reference TFF is checked and timed against.

Imports no TensorFlow. Modules:
  models        linear (MSE) and logistic (cross-entropy) regression on a flat weight vector
  client        a client's data, full-batch gradient (FedSGD), local SGD (FedAvg)
  server        broadcast, uniform / example-weighted mean, server SGD(M)
  algorithms    FedSGD / FedAvg client work and the synchronous loop
  asynchronous  FedBuff-style buffered asynchronous aggregation on a simulated clock
  synthetic     the seed's synthetic linear problem
  comparison    side-by-side runs against a reference engine, CSV and plots

`numpy_fl.tff_reference` (the TFF side) and `numpy_fl.compare` (the binary)
import TensorFlow and are therefore not imported here.
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

"""Sync vs FedBuff-style async under heavy-tailed delays: simulated time to a target loss.

Pure NumPy (no TensorFlow), on the textbook synthetic linear regression problem
(`numpy_fl.synthetic`) with 10 clients. For each delay distribution and spread,
and each buffer size, prints the simulated wall-clock time and server steps both
protocols need to reach 99% of the loss decrease the synchronous loop achieves
in 60 rounds (`numpy_fl.asynchronous.race_sync_async`).

  .venv/bin/python bench/numpy_fl_async.py
"""

import numpy_fl
from numpy_fl import asynchronous
from numpy_fl import models
from numpy_fl import synthetic

CLIENTS = 10
ROUNDS = 60
TARGET_FRACTION = 0.99


def main():
  data, _ = synthetic.linear_problem(clients=CLIENTS, features=10, seed=0)
  model = models.LinearRegression()
  clients = [numpy_fl.Client(x, y, model=model, name=name) for name, (x, y) in data.items()]
  initial = models.initial_weights(num_features=10)
  print(f'{CLIENTS} clients, FedSGD lr 0.05, sync {ROUNDS} rounds; staleness weight 1/sqrt(1+s); '
        f'target: {TARGET_FRACTION:.0%} of the synchronous loss decrease')
  print(f'{"delays":<18}{"B":>3}  {"sync time":>10}{"steps":>6}  {"async time":>10}{"steps":>6}'
        f'{"updates":>8}  {"speedup":>7}')
  for distribution, spread in [('lognormal', 0.0), ('lognormal', 0.5), ('lognormal', 1.0),
                               ('lognormal', 1.5), ('pareto', 0.5), ('pareto', 0.8)]:
    delays = asynchronous.Delays(distribution=distribution, spread=spread, seed=0)
    for buffer_size in (2, 5, CLIENTS):
      s = asynchronous.race_sync_async(
          make_server=lambda: numpy_fl.Server(initial, lr=0.05), clients=clients,
          algorithm=numpy_fl.FedSGD(), delays=delays, buffer_size=buffer_size,
          rounds=ROUNDS, target_fraction=TARGET_FRACTION).summary()
      sync, fedbuff = s['sync'], s['async']
      a_time = f'{fedbuff["time_to_target"]:.1f}' if fedbuff['time_to_target'] else 'never'
      a_steps = fedbuff['server_steps_to_target'] or '-'
      a_updates = fedbuff['client_updates_to_target'] or '-'
      speedup = f'{s["speedup"]:.2f}x' if s['speedup'] else '-'
      print(f'{distribution + " " + format(spread, "g"):<18}{buffer_size:>3}  '
            f'{sync["time_to_target"]:>10.1f}{sync["server_steps_to_target"]:>6}  '
            f'{a_time:>10}{a_steps:>6}{a_updates:>8}  {speedup:>7}')


if __name__ == '__main__':
  main()

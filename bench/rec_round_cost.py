"""Benchmark: where a default FedRecon round's time goes, TFF's client work against tff_rec's.

  nice -n 10 .venv/bin/python bench/rec_round_cost.py [--rounds=3] [--clients=50]

One local worker, the bundled MovieLens split and tff_rec's default settings
(implicit head on, 50 clients a round). Each row times `process.next` over
`--rounds` rounds after one warm-up round (tracing, worker start), as the
median wall time and the median CPU time of the worker and this process
together; the CPU figure is the one to compare on a shared machine. Rows:

  tff_client_work   TFF's `build_fed_recon` (each pass a `Dataset.reduce`), as tff_rec ran before
  tff_client_work_1 the same with 1 client: the server's part and the fixed cost of a round
  default           `tff_rec.algorithms.build_process` (the client loop in one graph)
  recon_epochs=0/1  reconstruction passes 0 or 1 instead of 3: the cost of a pass
  no_implicit       the rating head alone (no sampled unrated items: 1/4 of the examples)
  1_client          one client: server and fixed cost

Also: the orchestrator's dataset construction per round (`client_data_fn`),
and the size of one client's dataset as TFF serializes it (a graph per
client per round). Prints figures measured in this run; asserts nothing.
"""

import functools
import os
import time

from absl import flags

from tff_common import cli

_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Timed rounds per row (after one warm-up round).')
_CLIENTS = flags.DEFINE_integer('clients', 50, 'Clients per round.')
_SKIP_TFF = flags.DEFINE_bool('skip_tff', False, "Skip the rows of TFF's client work (slow).")


def _cpu_seconds() -> float:
  """CPU seconds of this process and its TFF worker(s) so far."""
  from tff_common import runtime
  total = time.process_time()
  tick = os.sysconf('SC_CLK_TCK')
  for worker in runtime.workers():
    pid = getattr(worker, 'pid', None)
    if pid is None:
      continue
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    total += (int(fields[11]) + int(fields[12])) / tick
  return total


def _tff_fed_recon(split, config, *, recon_epochs):
  """The process tff_rec built before: TFF's `build_fed_recon` itself."""
  import tensorflow_federated as tff

  from tff_common import aggregation
  from tff_rec import algorithms
  from tff_rec import model as model_lib
  return tff.learning.algorithms.build_fed_recon(
      model_fn=model_lib.reconstruction_model_fn(**config.model_kwargs(split)),
      loss_fn=model_lib.loss_fn(config.loss_weight()),
      metrics_fn=functools.partial(model_lib.metrics_fn, implicit=config.implicit),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(
          learning_rate=config.effective_server_lr()),
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=config.client_lr),
      reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(
          learning_rate=config.recon_lr),
      dataset_split_fn=algorithms.training_split_fn(recon_epochs=recon_epochs),
      model_aggregator_factory=aggregation.build_aggregator(config, weighted=True),
      metrics_aggregator=aggregation.metrics_aggregator(config))


def _project_fed_recon(split, config, *, recon_epochs):
  from tff_rec import algorithms
  from tff_rec import model as model_lib
  return algorithms.build_fed_recon(
      model_fn=model_lib.reconstruction_model_fn(**config.model_kwargs(split)),
      client_model_fn=model_lib.reconstruction_model_fn(**config.model_kwargs(split),
                                                        random_init=False),
      client_lr=config.client_lr, server_lr=config.effective_server_lr(),
      recon_lr=config.recon_lr, recon_epochs=recon_epochs,
      implicit_weight=config.loss_weight(), aggregator=config)


def main(argv):
  del argv
  import dataclasses

  import numpy as np
  import tensorflow as tf

  from tff_common import program
  from tff_rec import clients
  from tff_rec import config as config_lib
  from tff_rec import split as split_lib

  split = split_lib.load_and_split(config_lib.DataConfig(), log=lambda line: None)
  default = config_lib.TrainConfig()
  ids = clients.client_ids(split.train)

  def data_fn(config):
    return clients.training_data_fn(
        split.train, batch_size=config.examples_per_batch(), seed=config.seed,
        num_items=split.num_items, negatives_per_rating=config.negatives())

  def sampled(round_num, count):
    return program.sample_clients(ids, clients_per_round=count, seed=0, round_num=round_num)

  rows = []

  def row(name, build, config=default, recon_epochs=default.recon_epochs,
          clients_per_round=_CLIENTS.value):
    process = build(split, config, recon_epochs=recon_epochs)
    fn = data_fn(config)
    state = process.initialize()
    state = process.next(state, fn(sampled(1, clients_per_round), 1)).state
    wall, cpu = [], []
    for round_num in range(2, 2 + _ROUNDS.value):
      datasets = fn(sampled(round_num, clients_per_round), round_num)
      started, cpu_started = time.perf_counter(), _cpu_seconds()
      state = process.next(state, datasets).state
      wall.append(time.perf_counter() - started)
      cpu.append(_cpu_seconds() - cpu_started)
    rows.append((name, float(np.median(wall)), float(np.median(cpu))))
    print(f'{name:20s} wall {rows[-1][1]:7.3f} s   cpu {rows[-1][2]:7.3f} s', flush=True)

  # The orchestrator's part: building the round's datasets, and their size on the wire.
  fn = data_fn(default)
  build_times = []
  for round_num in range(2, 2 + _ROUNDS.value):
    started = time.perf_counter()
    datasets = fn(sampled(round_num, _CLIENTS.value), round_num)
    build_times.append(time.perf_counter() - started)
  graph_bytes = [len(tf.raw_ops.DatasetToGraphV2(input_dataset=d._variant_tensor).numpy())  # pylint: disable=protected-access
                 for d in datasets]
  examples = [sum(len(b['y']) for b in d.as_numpy_iterator()) for d in datasets]

  if not _SKIP_TFF.value:
    row('tff_client_work', _tff_fed_recon)
    row('tff_client_work_1', _tff_fed_recon, clients_per_round=1)
  row('default', _project_fed_recon)
  row('recon_epochs=0', _project_fed_recon, recon_epochs=0)
  row('recon_epochs=1', _project_fed_recon, recon_epochs=1)
  row('no_implicit', _project_fed_recon,
      config=dataclasses.replace(default, negatives_per_rating=0.0))
  row('1_client', _project_fed_recon, clients_per_round=1)

  by_name = {name: (wall, cpu) for name, wall, cpu in rows}
  print(f'\n{_CLIENTS.value} clients a round, {np.mean(examples):.0f} examples a client '
        f'(batches of {default.examples_per_batch()}), {split.num_items} items, dim {default.dim}')
  print(f'orchestrator: datasets built in {np.median(build_times) * 1000:.0f} ms a round; '
        f'one client\'s dataset serialized: {np.mean(graph_bytes) / 1000:.1f} kB '
        f'(max {max(graph_bytes) / 1000:.1f} kB)')
  print(f'\n{"row":20s} {"wall s":>8s} {"cpu s":>8s}')
  for name, wall, cpu in rows:
    print(f'{name:20s} {wall:8.3f} {cpu:8.3f}')
  base = by_name['default']
  per_pass = (by_name['recon_epochs=1'][1] - by_name['recon_epochs=0'][1])
  per_client = (base[1] - by_name['1_client'][1]) / max(_CLIENTS.value - 1, 1)
  print(f'\nreconstruction pass: {per_pass:.3f} cpu s a round; '
        f'a client: {per_client * 1000:.1f} cpu ms; fixed (1 client): {by_name["1_client"][1]:.3f} cpu s')
  if 'tff_client_work' in by_name:
    tff_row = by_name['tff_client_work']
    print(f'TFF client work / default: wall {tff_row[0] / base[0]:.2f}x, cpu {tff_row[1] / base[1]:.2f}x')


if __name__ == '__main__':
  cli.run(main)

r"""Benchmark: where a credit FedAvg round goes, against one Keras epoch on the pooled rows.

    .venv/bin/python bench/credit_round_cost.py [--rounds=10] [--output_dir=DIR]

Both do the same arithmetic (one pass of minibatch SGD over every training row,
batch 32, logistic regression). The round of `python -m tff_credit.train
--client_data=datasets` (the job's only path before `--client_data`) is broken down into its parts, each timed `--rounds` times (median; wall clock,
and CPU seconds of this process, the orchestrator, and of the TFF worker):

  datasets     `training.client_data_fn_for`: each bank's tf.data pipeline
  TFF call     `process.next` on them: the datasets serialized (their rows
               travel inside each dataset's graph), the client work on the
               worker, aggregation and the server update
  evaluation   the per-round federated AUC (`training.federated_evaluator`)
  checkpoint   the state saved (`tff.program.FileProgramStateManager`; every
               `--rounds_per_checkpoint` rounds, 5 by default)

and the same round with `--client_data=tensors` (what `auto`, the default,
picks for FedAvg; `tff_credit.tensor_client_work`:
the same batches as padded tensors; its process checked to give the datasets
path's weights), its data, call and federated evaluation (each bank's rows one
tensor: the same metrics) timed the same way (its checkpoint is the datasets
round's: the same state),

then what TFF charges whatever the data (one bank with one row; five), and
variants of the round that TFF allows:

  pre-batched       the job's process on in-memory batched datasets, no shuffle
  no metrics        the job's FedAvg with a model without AUC / log-loss metrics
  tensor batches    the same FedAvg written as a plain TFF computation whose
                    client data is a tensor of padded batches, not a sequence
                    (TFF's learning processes require sequences); checked to
                    give the job's weights on the same batches

Prints a table and writes credit_round_cost.md / .json to `--output_dir` if
given. Time figures depend on the machine's load: compare the ratios of one
run. Asserts nothing.
"""

import json
import os
import statistics
import tempfile
import time

from absl import flags

from tff_common import cli

_ROUNDS = flags.DEFINE_integer('rounds', 10, 'Rounds (and epochs) timed per measurement.')
_BANKS = flags.DEFINE_integer('banks', 5, 'Banks.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where to write credit_round_cost.md/.json.')

BATCH = 32


def _cpu_s(pid) -> float:
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


class Timer:
  """Median wall seconds per call, and mean CPU seconds of us and the workers."""

  def __init__(self, workers):
    self._workers = workers
    self.rows = []

  def measure(self, label: str, fn, n: int, what: str = '') -> dict:
    walls = []
    cpu0 = (_cpu_s('self'), sum(_cpu_s(pid) for pid in self._workers))
    for i in range(n):
      start = time.perf_counter()
      fn(i)
      walls.append(time.perf_counter() - start)
    row = dict(label=label, what=what, wall_ms=statistics.median(walls) * 1000,
               orchestrator_cpu_ms=(_cpu_s('self') - cpu0[0]) / n * 1000,
               worker_cpu_ms=(sum(_cpu_s(pid) for pid in self._workers) - cpu0[1]) / n * 1000)
    self.rows.append(row)
    print(f'{label:46s} {row["wall_ms"]:8.1f} ms  (CPU: orchestrator {row["orchestrator_cpu_ms"]:6.1f}'
          f', worker {row["worker_cpu_ms"]:6.1f})', flush=True)
    return row


def tensor_fedavg(*, num_features: int, num_batches: int, client_lr: float, server_lr: float):
  """FedAvg of the logistic scorecard as a plain TFF computation on tensors.

  Federated type, with W = <kernel=float32[d,1], bias=float32[1]>:
    (<W@SERVER, {float32[n,32,d]}@CLIENTS, {float32[n,32,1]}@CLIENTS,
      {float32[n,32]}@CLIENTS> -> W@SERVER)
  Each bank runs SGD over its n padded batches (the mask marks real rows; a
  batch's loss is the mean over its real rows, as Keras's and TFF's are), the
  server averages the banks' deltas weighted by their row counts and takes a
  step of `server_lr`, as `tff.learning.algorithms.build_weighted_fed_avg`
  with SGD does.
  """
  import numpy as np
  import tensorflow as tf
  import tensorflow_federated as tff

  weights_type = tff.types.to_type(((np.float32, [num_features, 1]), (np.float32, [1])))
  x_type = tff.TensorType(np.float32, [num_batches, BATCH, num_features])
  y_type = tff.TensorType(np.float32, [num_batches, BATCH, 1])
  mask_type = tff.TensorType(np.float32, [num_batches, BATCH])

  @tff.tensorflow.computation(weights_type, x_type, y_type, mask_type)
  def client_update(weights, x, y, mask):
    kernel, bias = weights

    def step(i, kernel, bias):
      rows = tf.reduce_sum(mask[i])
      with tf.GradientTape() as tape:
        tape.watch([kernel, bias])
        # Keras's cross-entropy of a sigmoid output is computed from its logits.
        logits = tf.matmul(x[i], kernel) + bias
        losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=y[i], logits=logits)[:, 0]
        loss = tf.reduce_sum(losses * mask[i]) / tf.maximum(rows, 1.0)
      grad_k, grad_b = tape.gradient(loss, [kernel, bias])
      return i + 1, kernel - client_lr * grad_k, bias - client_lr * grad_b

    _, trained_k, trained_b = tf.while_loop(lambda i, k, b: i < num_batches, step,
                                            (tf.constant(0), kernel, bias))
    # Points like a gradient, as TFF's updates do: global minus trained.
    return (kernel - trained_k, bias - trained_b), tf.reduce_sum(mask)

  @tff.tensorflow.computation(weights_type, weights_type)
  def server_update(weights, delta):
    return tuple(w - server_lr * d for w, d in zip(weights, delta))

  @tff.federated_computation(tff.FederatedType(weights_type, tff.SERVER),
                             tff.FederatedType(x_type, tff.CLIENTS),
                             tff.FederatedType(y_type, tff.CLIENTS),
                             tff.FederatedType(mask_type, tff.CLIENTS))
  def next_fn(weights, x, y, mask):
    delta, rows = tff.federated_map(
        client_update, (tff.federated_broadcast(weights), x, y, mask))
    mean = tff.federated_mean(delta, weight=rows)
    return tff.federated_map(server_update, (weights, mean))

  return next_fn


def padded_batches(x, y, num_batches: int):
  """Rows cut into `num_batches` batches of 32, zero-padded, and the row mask."""
  import numpy as np
  size = num_batches * BATCH
  xs = np.zeros((size, x.shape[1]), np.float32)
  ys = np.zeros((size, 1), np.float32)
  mask = np.zeros(size, np.float32)
  xs[:len(x)], ys[:len(y), 0], mask[:len(x)] = x, y, 1.0
  return (xs.reshape(num_batches, BATCH, -1), ys.reshape(num_batches, BATCH, 1),
          mask.reshape(num_batches, BATCH))


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf
  import tensorflow_federated as tff

  from tff_common import runtime
  from tff_common import seeding
  from tff_credit import algorithms
  from tff_credit import config
  from tff_credit import evaluation
  from tff_credit import federation
  from tff_credit import model
  from tff_credit import training

  n = _ROUNDS.value
  algorithm, train_config = config.AlgorithmConfig(), config.TrainConfig()
  fed = federation.build_federation(config.DataConfig(banks=_BANKS.value, partition='iid'))
  names = fed.bank_names
  d = fed.num_features
  rows = sum(len(fed.train[name][1]) for name in names)
  timer = Timer([w.pid for w in runtime.workers()])
  print(f'{len(names)} banks, {rows} training rows, {d} features, batch {BATCH}; '
        f'{n} repetitions per line (median wall; mean CPU per call)\n', flush=True)

  # The Keras epoch: the same rows pooled, one process, no TFF.
  x_pooled, y_pooled = fed.pooled('train')
  fit = dict(x=x_pooled, y=y_pooled, model='logreg', batch_size=BATCH,
             learning_rate=algorithm.client_lr, seed=0)
  evaluation.fit_keras(epochs=1, **fit)  # tracing
  start = time.perf_counter()
  evaluation.fit_keras(epochs=n, **fit)
  keras_ms = (time.perf_counter() - start) / n * 1000
  timer.rows.append(dict(label='Keras epoch (pooled rows)', what='keras', wall_ms=keras_ms,
                         orchestrator_cpu_ms=float('nan'), worker_cpu_ms=0.0))
  print(f'{"Keras epoch (pooled rows)":46s} {keras_ms:8.1f} ms', flush=True)

  # The job's round, part by part.
  model_fn = model.model_fn_for(model='logreg', num_features=d)
  process = algorithms.build_process(algorithm, model_fn)
  data_fn = training.client_data_fn_for(fed, algorithm='fedavg', train=train_config)
  state = process.initialize()
  start = time.perf_counter()
  state = process.next(state, data_fn(names, 0)).state  # compilation, worker warm-up
  first_ms = (time.perf_counter() - start) * 1000
  print(f'{"job: first call (compiled once, then cached)":46s} {first_ms:8.1f} ms', flush=True)
  timer.measure('job: client datasets (client_data_fn)', lambda r: data_fn(names, r + 1), n,
                'part')
  datasets = [data_fn(names, r + 1) for r in range(n)]
  holder = [state]

  def job_round(r):
    holder[0] = process.next(holder[0], datasets[r]).state

  call = timer.measure('job: TFF call process.next', job_round, n, 'part')
  evaluate = training.federated_evaluator(fed, model_fn)
  weights = process.get_model_weights(holder[0])
  evaluate(weights)
  timer.measure('job: per-round federated evaluation', lambda r: evaluate(weights), n, 'part')
  with tempfile.TemporaryDirectory() as tmp:
    manager = tff.program.FileProgramStateManager(root_dir=tmp, prefix='round_', keep_total=3,
                                                  keep_first=False)
    import asyncio
    timer.measure('job: checkpoint (one save)',
                  lambda r: asyncio.run(manager.save(holder[0], r + 1)), n, 'part')

  # The job's round with --client_data=tensors: the same process but for how
  # the banks' batches reach TFF.
  tensor_process = algorithms.build_process(algorithm, model_fn, client_data='tensors')
  tensor_fn = training.client_data_fn_for(fed, algorithm='fedavg', train=train_config,
                                          client_data='tensors')
  tensor_holder = [tensor_process.next(tensor_process.initialize(), tensor_fn(names, 0)).state]
  tensor_data_row = timer.measure('tensors: client data (client_data_fn)',
                                  lambda r: tensor_fn(names, r + 1), n, 'tensors')
  tensor_inputs = [tensor_fn(names, r + 1) for r in range(n)]

  def tensor_job_round(r):
    tensor_holder[0] = tensor_process.next(tensor_holder[0], tensor_inputs[r]).state

  tensor_call = timer.measure('tensors: TFF call process.next', tensor_job_round, n, 'tensors')
  tensor_evaluate = training.federated_evaluator(fed, model_fn, client_data='tensors')
  tensor_evaluate(weights)
  tensor_eval = timer.measure('tensors: per-round federated evaluation',
                              lambda r: tensor_evaluate(weights), n, 'tensors')
  eval_difference = max(abs(a - tensor_evaluate(weights)[k]) for k, a in evaluate(weights).items())
  # Both paths from the same start on the same batches: the weights they reach.
  start_state = process.initialize()
  paths_difference = max(
      float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
          process.get_model_weights(process.next(start_state, datasets[0]).state).trainable,
          tensor_process.get_model_weights(
              tensor_process.next(tensor_process.initialize(), tensor_inputs[0]).state).trainable,
          strict=True))

  # What TFF charges whatever the data.
  x0, y0 = fed.train[names[0]]
  tiny = tf.data.Dataset.from_tensor_slices((x0[:1], y0[:1, None])).batch(BATCH)
  process.next(holder[0], [tiny])
  one = timer.measure('fixed: 1 bank with 1 row', lambda r: process.next(holder[0], [tiny]), n,
                      'fixed')
  process.next(holder[0], [tiny] * len(names))
  many = timer.measure(f'fixed: {len(names)} banks with 1 row each',
                       lambda r: process.next(holder[0], [tiny] * len(names)), n, 'fixed')

  # Variants TFF allows.
  batched = [tf.data.Dataset.from_tensor_slices((x, y[:, None])).batch(BATCH)
             for x, y in (fed.train[name] for name in names)]
  process.next(holder[0], batched)
  timer.measure('variant: pre-batched in-memory, no shuffle',
                lambda r: process.next(holder[0], batched), n, 'variant')

  def bare_model_fn():
    return tff.learning.models.from_keras_model(
        model.build_keras_model(model='logreg', num_features=d),
        loss=tf.keras.losses.BinaryCrossentropy(), input_spec=model.input_spec(d))

  bare = algorithms.build_process(algorithm, bare_model_fn)
  bare_state = bare.initialize()
  bare_state = bare.next(bare_state, datasets[0]).state
  timer.measure('variant: model without AUC/log-loss metrics',
                lambda r: bare.next(bare_state, datasets[r]), n, 'variant')

  num_batches = max(-(-len(fed.train[name][1]) // BATCH) for name in names)
  next_fn = tensor_fedavg(num_features=d, num_batches=num_batches,
                          client_lr=algorithm.client_lr, server_lr=algorithm.server_lr)

  def tensor_data(r):
    """Each bank's rows shuffled with a seed of (seed, round, bank), then padded."""
    parts = []
    for i, name in enumerate(names):
      x, y = fed.train[name]
      order = np.random.default_rng(seeding.client_seed(train_config.seed, r, i)).permutation(len(y))
      parts.append(padded_batches(x[order], y[order], num_batches))
    return [list(p) for p in zip(*parts)]

  zero = (np.zeros((d, 1), np.float32), np.zeros(1, np.float32))
  tensor_weights = [next_fn(zero, *tensor_data(0))]

  def tensor_round(r):
    tensor_weights[0] = next_fn(tensor_weights[0], *tensor_data(r + 1))

  tensor = timer.measure('variant: plain TFF FedAvg on tensor batches (incl. data)',
                         tensor_round, n, 'variant')

  # The tensor FedAvg computes the job's round: one round from zeros on the
  # same (unshuffled) batches.
  job_once = process.get_model_weights(process.next(process.initialize(), batched).state)
  padded = [padded_batches(*fed.train[name], num_batches) for name in names]
  mine = next_fn(zero, *[list(p) for p in zip(*padded)])
  difference = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(job_once.trainable, mine, strict=True))

  per_bank = (many['wall_ms'] - one['wall_ms']) / (len(names) - 1)
  summary = dict(
      banks=len(names), rows=rows, features=d, rounds_timed=n, keras_epoch_ms=keras_ms,
      job_call_ms=call['wall_ms'], job_first_call_ms=first_ms,
      job_round_ms=sum(r['wall_ms'] for r in timer.rows if r['what'] == 'part'),
      one_bank_one_row_ms=one['wall_ms'], fixed_per_bank_ms=per_bank,
      tensor_round_ms=tensor['wall_ms'], tensor_vs_job_max_weight_difference=difference,
      tensors_call_ms=tensor_call['wall_ms'], tensors_data_ms=tensor_data_row['wall_ms'],
      tensors_vs_datasets_max_weight_difference=paths_difference,
      rows_timed=timer.rows)
  parts = {r['label'].split(': ', 1)[1].split(' (')[0]: r['wall_ms'] for r in timer.rows
           if r['what'] == 'part'}
  summary['tensors_round_ms'] = (tensor_data_row['wall_ms'] + tensor_call['wall_ms'] +
                                 tensor_eval['wall_ms'] + parts['checkpoint'])
  summary['evaluation_ms'] = parts['per-round federated evaluation']
  summary['tensors_evaluation_ms'] = tensor_eval['wall_ms']
  summary['checkpoint_ms'] = parts['checkpoint']
  summary['tensors_vs_datasets_max_metric_difference'] = eval_difference
  summary['ratio_tensors_call'] = tensor_call['wall_ms'] / keras_ms
  summary['ratio_tensors_round'] = summary['tensors_round_ms'] / keras_ms
  summary['ratio_tensors_round_without_checkpoint'] = (
      summary['tensors_round_ms'] - parts['checkpoint']) / keras_ms
  # The job's default round: a checkpoint every `rounds_per_checkpoint` rounds.
  period = train_config.rounds_per_checkpoint
  summary['rounds_per_checkpoint'] = period
  summary['ratio_tensors_round_default'] = (
      summary['tensors_round_ms'] - parts['checkpoint'] + parts['checkpoint'] / period) / keras_ms
  # The tensors round had its evaluation been the datasets one.
  summary['ratio_tensors_round_datasets_eval'] = (
      summary['tensors_round_ms'] - tensor_eval['wall_ms'] + summary['evaluation_ms']) / keras_ms
  summary['ratio_call'] = summary['job_call_ms'] / keras_ms
  summary['ratio_round'] = summary['job_round_ms'] / keras_ms
  summary['ratio_fixed_only'] = many['wall_ms'] / keras_ms
  summary['ratio_tensor'] = summary['tensor_round_ms'] / keras_ms
  lines = [
      '', f'Keras epoch on the pooled rows:                {keras_ms:7.1f} ms',
      f'job TFF call (process.next):                   {call["wall_ms"]:7.1f} ms   ratio '
      f'{summary["ratio_call"]:.2f}',
      f'job round (datasets + call + eval + checkpoint): {summary["job_round_ms"]:7.1f} ms   '
      f'ratio {summary["ratio_round"]:.2f}',
      f'a call on 1 bank of 1 row: {one["wall_ms"]:.1f} ms; each further bank of 1 row: '
      f'+{per_bank:.1f} ms ({len(names)} banks of 1 row: {many["wall_ms"]:.1f} ms, ratio '
      f'{summary["ratio_fixed_only"]:.2f}: what TFF charges whatever the rows)',
      f'tensor-batch FedAvg round:                      {tensor["wall_ms"]:7.1f} ms   ratio '
      f'{summary["ratio_tensor"]:.2f}  (its weights after one round vs the job\'s: max '
      f'|difference| {difference:.1e})',
      f'job TFF call, --client_data=tensors:           {tensor_call["wall_ms"]:7.1f} ms   ratio '
      f'{summary["ratio_tensors_call"]:.2f}  (one round from the same state, vs datasets: max '
      f'|weight difference| {paths_difference:.1e})',
      f'job round, --client_data=tensors (data + call + eval + checkpoint): '
      f'{summary["tensors_round_ms"]:7.1f} ms   ratio {summary["ratio_tensors_round"]:.2f} '
      f'(evaluation {tensor_eval["wall_ms"]:.1f} ms on tensors vs {summary["evaluation_ms"]:.1f} '
      f'on datasets, metrics within {eval_difference:.1e}; checkpoint '
      f'{summary["checkpoint_ms"]:.1f} ms; with the datasets evaluation the ratio would be '
      f'{summary["ratio_tensors_round_datasets_eval"]:.2f})',
      f'  the same without the checkpoint (--rounds_per_checkpoint > 1 spreads it): ratio '
      f'{summary["ratio_tensors_round_without_checkpoint"]:.2f}',
      f'  the job\'s default round (a checkpoint every {period} rounds, its cost spread over '
      f'them): ratio {summary["ratio_tensors_round_default"]:.2f}']
  print('\n'.join(lines))
  if _OUTPUT_DIR.value:
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    with open(os.path.join(_OUTPUT_DIR.value, 'credit_round_cost.json'), 'w') as f:
      json.dump(summary, f, indent=1)
    table = ['| part | wall ms | orchestrator CPU ms | worker CPU ms |', '|---|---|---|---|']
    table += [f'| {r["label"]} | {r["wall_ms"]:.1f} | {r["orchestrator_cpu_ms"]:.1f} | '
              f'{r["worker_cpu_ms"]:.1f} |' for r in timer.rows]
    with open(os.path.join(_OUTPUT_DIR.value, 'credit_round_cost.md'), 'w') as f:
      f.write('# credit_round_cost (bench/credit_round_cost.py)\n\n' + '\n'.join(table) +
              '\n' + '\n'.join(lines) + '\n')


if __name__ == '__main__':
  cli.run(main)

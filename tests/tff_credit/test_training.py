"""tff_credit.training: what each bank trains on, learning, exact resume."""

import json

import numpy as np
import pytest

from tests.tff_credit.helpers import ALGORITHM
from tests.tff_credit.helpers import data_config
from tests.tff_credit.helpers import train
from tests.tff_credit.helpers import train_config
from tests.tff_credit.helpers import write_loans_csv
from tff_common import errors
from tff_common import run_dir
from tff_credit import config
from tff_credit import evaluation
from tff_credit import federation
from tff_credit import model
from tff_credit import training


def test_what_a_sampled_bank_trains_on(tff_context, loans_csv):
  """FedSGD: one batch of all its rows; FedAvg: shuffled batches, replayed for
  the same (seed, round), new the next round."""
  del tff_context
  fed = federation.build_federation(data_config(loans_csv, partition='size_skew', seed=0))
  train_config = config.TrainConfig(batch_size=8, seed=0)
  fedsgd = training.client_data_fn_for(fed, algorithm='fedsgd', train=train_config)
  (batch,) = list(fedsgd(['bank_2'], 1)[0].as_numpy_iterator())
  np.testing.assert_array_equal(batch[0], fed.train['bank_2'][0])
  fedavg = training.client_data_fn_for(fed, algorithm='fedavg', train=train_config)
  def order(round_num):
    batches = list(fedavg(['bank_2'], round_num)[0].as_numpy_iterator())
    assert max(len(b[1]) for b in batches) == 8
    return np.concatenate([b[1][:, 0] for b in batches] + [b[0][:, 0] for b in batches])
  np.testing.assert_array_equal(order(3), order(3))
  assert not np.array_equal(order(3), order(4))
  assert sorted(order(3)[:len(fed.train['bank_2'][1])]) == sorted(fed.train['bank_2'][1])


def test_three_banks_raise_auc_select_the_best_round_and_resume_exactly(tff_context, tmp_path):
  del tff_context
  path = write_loans_csv(tmp_path / 'loans.csv', rows=900)
  full = train(path, tmp_path / 'full', 6)
  aucs = [h['test/auc'] for h in full.history]
  # test/auc is measured after each round; it ends above 0.7, not below round 1's.
  assert aucs[-1] > 0.7 and aucs[-1] > aucs[0] - 1e-9
  rounds, losses = run_dir.RunDir(str(tmp_path / 'full')).training_loss()
  assert rounds == [1, 2, 3, 4, 5, 6] and losses[-1] < losses[0]
  # The reported model is the round of the best federated validation AUC (the
  # earliest on a tie); the last round's is kept beside it.
  val = [h['val/auc'] for h in full.history]
  best = int(np.argmax(val)) + 1
  assert full.best_round == best and full.best_value == pytest.approx(max(val))
  run = run_dir.RunDir(str(tmp_path / 'full'))
  weights, meta = model.load_with_metadata(run)
  assert (meta['selection'], meta['selected_round'], meta['rounds']) == ('best', best, 6)
  last, last_meta = model.load_with_metadata(run, file_name=run_dir.MODEL_LAST)
  assert (last_meta['selection'], last_meta['selected_round']) == ('last', 6)
  for final, saved in zip(full.state.global_model_weights.trainable, last, strict=True):
    np.testing.assert_array_equal(saved, final)
  for w, b in zip(weights, full.best_state.global_model_weights.trainable, strict=True):
    np.testing.assert_array_equal(w, b)
  train(path, tmp_path / 'resumed', 3)
  resumed = train(path, tmp_path / 'resumed', 6)
  assert resumed.resumed_from == 3 and resumed.rounds_run == 3
  assert resumed.best_round == best
  for name in (run_dir.MODEL, run_dir.MODEL_LAST):
    a = model.load_with_metadata(run_dir.RunDir(str(tmp_path / 'full')), file_name=name)
    b = model.load_with_metadata(run_dir.RunDir(str(tmp_path / 'resumed')), file_name=name)
    assert a[1]['selected_round'] == b[1]['selected_round']
    for wa, wb in zip(a[0], b[0], strict=True):
      np.testing.assert_allclose(wa, wb, atol=1e-6)


def test_select_last_and_a_directory_from_before_validation(tff_context, tmp_path):
  """--select=last reports the last round and keeps the best; a directory
  written before validation splits resumes only with --val_fraction=0."""
  del tff_context
  path = write_loans_csv(tmp_path / 'loans.csv', rows=400)
  quiet = dict(algorithm=ALGORITHM, log=lambda line: None)
  last = training.train(data=data_config(path), train_config=config.TrainConfig(
      rounds=2, batch_size=32, seed=1, select='last'), output_dir=str(tmp_path / 'last'), **quiet)
  run = run_dir.RunDir(str(tmp_path / 'last'))
  assert model.load_with_metadata(run)[1]['selection'] == 'last'
  assert model.load_with_metadata(run, file_name=run_dir.MODEL_BEST)[1]['selected_round'] == (
      last.best_round)

  old = tmp_path / 'old'
  no_val = data_config(path, val_fraction=0.0)
  first = training.train(data=no_val, train_config=train_config(1), output_dir=str(old), **quiet)
  assert first.best_round == 0  # nothing to select by
  settings = json.loads((old / 'config.json').read_text())
  del settings['data']['val_fraction'], settings['train']['l2'], settings['train']['select']
  (old / 'config.json').write_text(json.dumps(settings))
  before = (old / 'config.json').read_bytes()
  with pytest.raises(errors.InputError, match=r'--val_fraction=0.2: expected 0 to continue'):
    training.train(data=data_config(path), train_config=train_config(2), output_dir=str(old),
                   **quiet)
  assert (old / 'config.json').read_bytes() == before
  resumed = training.train(data=no_val, train_config=train_config(2), output_dir=str(old),
                           **quiet)
  assert resumed.resumed_from == 1
  assert model.load_with_metadata(run_dir.RunDir(str(old)))[1]['selected_round'] == 2
  # Its evaluation has no validation rows: every model is the last round's.
  summary = evaluation.evaluate(output_dir=str(old), log=lambda line: None)
  assert summary['setup']['val_fraction'] == 0.0
  assert summary['centralized']['selection'] == {'rule': 'last', 'round': 2, 'val_auc': None}


def test_a_changed_data_file_is_refused_and_the_run_left_as_it_was(tff_context, tmp_path):
  del tff_context
  path = write_loans_csv(tmp_path / 'loans.csv', rows=400)
  out = tmp_path / 'run'
  train(path, out, 2)
  before = {name: (out / name).read_bytes() for name in ('config.json', 'schema.json', 'model.npz')}
  # Same path, same columns, other rows: the feature count does not change.
  write_loans_csv(path, rows=300, seed=5)
  with pytest.raises(errors.InputError, match='sha256'):
    train(path, out, 3)
  assert {name: (out / name).read_bytes() for name in before} == before
  with pytest.raises(errors.InputError, match='content changed since the model'):
    evaluation.evaluate(output_dir=str(out), log=lambda line: None)
  # Other columns entirely (the region dropped): the same one line, not an encoding crash.
  lines = path.read_text().splitlines()
  path.write_text('\n'.join(','.join(line.split(',')[:3] + line.split(',')[4:]) for line in lines))
  with pytest.raises(errors.InputError, match='content changed since the model'):
    evaluation.evaluate(output_dir=str(out), log=lambda line: None)


def test_compressed_updates_train_and_send_fewer_bytes(tff_context, tmp_path):
  del tff_context
  path = write_loans_csv(tmp_path / 'loans.csv', rows=900)
  common = dict(data=data_config(path), train_config=config.TrainConfig(rounds=4, batch_size=32,
                                                                         seed=1),
                log=lambda line: None)
  plain = training.train(algorithm=config.AlgorithmConfig(client_lr=0.2),
                         output_dir=str(tmp_path / 'plain'), **common)
  two_bits = config.AlgorithmConfig(client_lr=0.2, aggregator='compressed', quantization_bits=2,
                                    compression_threshold=0)
  compressed = training.train(algorithm=two_bits, output_dir=str(tmp_path / 'compressed'),
                              **common)
  up = [run_dir.RunDir(str(tmp_path / name)).total('bytes_up', 4) for name in ('plain', 'compressed')]
  # 3 banks a round, each sending 7 float32 weights (28 bytes) and its example count, or,
  # quantized, each tensor (6 kernel values, 1 bias) as one packed word plus its min and
  # max (12 bytes each).
  assert up == [4 * 3 * (28 + 4), 4 * 3 * (12 + 12 + 4)]
  # Quantized updates still learn: AUC well above chance, not far from the plain run's.
  assert compressed.history[-1]['test/auc'] > 0.7
  assert compressed.history[-1]['test/auc'] > plain.history[-1]['test/auc'] - 0.05

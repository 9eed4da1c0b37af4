"""What top-N lists should be ranked by: a probe on a trained directory.

    .venv/bin/python bench/rec_ranking_probe.py /tmp/rec_bench

For each trained model (training users, the protocol and negatives of
tff_rec.evaluate) prints HR@10 / NDCG@10 when ranking by
*   the predicted rating (the rating head), with and without a
    minimum-support filter (only items with >= 20 training ratings);
*   the implicit head ("will this user rate it?"), when the model has one;
next to the popularity recommender. Rating-only MF ranks below popularity on
MovieLens because the leave-one-out positive is an item the user chose to
rate, which a rating predictor does not model; the implicit head does.
"""

import sys

import numpy as np

from tff_common import quiet


def main(output_dir):
  quiet.import_tensorflow()
  from tff_common import run_dir
  from tff_rec import centralized
  from tff_rec import config
  from tff_rec import evaluation
  from tff_rec import params
  from tff_rec import split as split_lib
  root = run_dir.RunDir(output_dir)
  split = split_lib.load_and_split(config.read_data_config(root), log=lambda s: None)
  counts = centralized.popularity(split)
  pop = evaluation.popularity_metrics(counts, split.train, split.test, seed=0)
  print(f'popularity: hr@10 {pop["hr@10"]:.4f} ndcg@10 {pop["ndcg@10"]:.4f}')
  for algorithm in config.ALGORITHMS:
    if not root.child(algorithm).exists(run_dir.MODEL):
      continue
    model = params.from_arrays(root.child(algorithm).load_model()[0])
    recon = config.read_train_config(root, algorithm).recon()
    users = evaluation.training_user_factors(model, split, recon)
    for name, score_fn in _variants(model, users, counts):
      r = evaluation.ranking_metrics(score_fn, split.train, split.test,
                                     num_items=split.num_items, seed=0)
      print(f'{algorithm:>11} by {name}: hr@10 {r["hr@10"]:.4f} ndcg@10 {r["ndcg@10"]:.4f}')


def _variants(model, users, counts):
  """(name, user row -> item scores) of each ranking rule probed."""
  variants = [('predicted rating', lambda k: model.scores(users.p[k], users.b_u[k:k + 1])[0]),
              ('predicted rating, items with >= 20 ratings',
               lambda k: model.scores(users.p[k], users.b_u[k:k + 1])[0] +
               np.where(counts >= 20, 0.0, -np.inf))]
  if model.implicit:
    variants.append(('implicit head', lambda k: model.rated_logits(users.s[k])[0]))
  return variants


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else '/tmp/rec_bench')

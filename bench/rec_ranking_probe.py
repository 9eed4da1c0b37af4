"""Why the MF models rank below popularity on HR@10: a probe on a trained directory.

    .venv/bin/python bench/rec_ranking_probe.py /tmp/rec_bench

Re-ranks each model's predicted ratings (training users, same protocol and
negatives as tff_rec.evaluate) two ways and prints HR@10 / NDCG@10:
*   only items with at least m training ratings (a minimum-support filter);
*   predicted rating + beta * log(1 + training ratings of the item).
If rarely rated items with a few high ratings crowding the top were the
whole story, the filter would close the gap to popularity; it does not,
because the leave-one-out positive is an item the user chose to rate, which
a rating predictor does not model.
"""

import sys

import numpy as np

from tff_common import quiet


def main(output_dir):
  quiet.import_tensorflow()
  # pylint: disable=g-import-not-at-top
  from tff_rec import centralized, evaluation, params, training
  # pylint: enable=g-import-not-at-top
  split = training.prepare(training.load_data_config(output_dir), log=lambda s: None)
  counts = centralized.popularity(split)
  pop = evaluation.popularity_metrics(counts, split.train, split.test, seed=0)
  print(f'popularity: hr@10 {pop["hr@10"]:.4f} ndcg@10 {pop["ndcg@10"]:.4f}')
  for algorithm in ('fedrecon', 'fedavg', 'centralized'):
    p, _ = params.load(training.model_path(output_dir, algorithm))
    config = training.load_train_config(output_dir, algorithm)
    if p.user_factors is not None:
      users, biases = p.user_factors, p.user_bias
    else:
      users, biases = evaluation.reconstruct_part(p, split.train, config.recon())
    variants = [(f'min {m:>2} ratings', np.where(counts >= m, 0.0, -np.inf)) for m in (0, 10, 20)]
    variants += [(f'beta {b:<4}', b * np.log1p(counts)) for b in (0.5, 1.0, 2.0)]
    for name, shift in variants:
      r = evaluation.ranking_metrics(lambda k: p.scores(users[k], biases[k:k + 1])[0] + shift,
                                     split.train, split.test, num_items=split.num_items, seed=0)
      print(f'{algorithm:>11} {name}: hr@10 {r["hr@10"]:.4f} ndcg@10 {r["ndcg@10"]:.4f}')


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else '/tmp/rec_bench')

r"""How much of a FedRecon client's dense update is zeros, and what a sparse upload would send.

    .venv/bin/python bench/rec_sparse_updates.py [--rounds=20]

A client's update of the item parameters is non-zero only in the rows of the
items in its examples of the round: its rated items and the unrated items it
samples for the implicit head (plain SGD, and the L2 penalty is per example,
so no other row moves). This replays the default tff_rec.train run's client
sampling and on-device draws (the same seeds) for the bundled data, counts
those rows and compares the dense float32 upload
(`tff_common.communication`) with a sparse one: for each touched row its
int32 index and the row of each head (factors and bias), plus the offset.

What a sparse upload reveals: the touched rows ARE the user's rated items
(hidden only among the sampled unrated ones), so it is acceptable only under
secure aggregation, where the server sees the sum of a round's uploads, never
one client's.
"""

import numpy as np
from absl import flags

from tff_common import aggregation
from tff_common import cli  # imports TensorFlow quietly, before program does
from tff_common import program
from tff_rec import config as config_lib
from tff_rec import reconstruction
from tff_rec import split as split_lib

_ROUNDS = flags.DEFINE_integer('rounds', 20, 'Rounds of the default run to replay.')


def main(argv):
  del argv
  config = config_lib.TrainConfig()
  split = split_lib.load_and_split(config_lib.DataConfig(), log=lambda line: None)
  part, items, dim = split.train, split.num_items, config.dim
  heads = 2 if config.implicit else 1
  shapes = [(items, dim), (items, 1), ()] + ([(items, dim), (items, 1)] if config.implicit else [])
  dense = aggregation.update_bytes(aggregation.MEAN, shapes, weighted=True)
  touched = []
  for round_num in range(1, _ROUNDS.value + 1):
    sampled = program.sample_clients([str(u) for u in part.users],
                                     clients_per_round=config.clients_per_round,
                                     seed=config.seed, round_num=round_num)
    for cid in sampled:
      k = part.position(int(cid))
      examples, _, _ = reconstruction.with_negatives(
          part.items_of(k), part.ratings_of(k), num_items=items,
          negatives_per_rating=config.negatives(),
          rng=reconstruction.negatives_rng(config.seed, int(cid), round_num))
      touched.append(len(np.unique(examples)))
  touched = np.asarray(touched)
  # Per touched row: its index (int32) and, per head, dim factors and a bias (float32);
  # then the offset and the client's weight.
  sparse = touched * (4 + heads * 4 * (dim + 1)) + 4 + 4
  print(f'{len(touched)} client updates ({_ROUNDS.value} rounds x {config.clients_per_round} users), '
        f'{items:,} items, dim {dim}, {heads} heads')
  print(f'rows touched per update: median {np.median(touched):.0f}, mean {touched.mean():.1f}, '
        f'max {touched.max()} of {items:,} (zeros: {100 * (1 - touched.mean() / items):.2f}% of '
        'the dense update, on average)')
  print(f'bytes up per client: dense float32 {dense:,}; sparse mean {sparse.mean():,.0f}, '
        f'median {np.median(sparse):,.0f} ({dense / sparse.mean():.0f}x fewer on average)')


if __name__ == '__main__':
  cli.run(main, federated=False)

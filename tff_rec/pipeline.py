"""Train every recommender, compare them, recommend: the `./run.sh` demo (Python orchestrator).

Each step is the library call behind one binary (`train`, `evaluate`,
`recommend`), in one process with one TFF runtime, into one output
directory, so rerunning resumes finished and unfinished steps alike.
"""

import dataclasses
import time

from tff_common import program
from tff_rec import report
from tff_rec import topn
from tff_rec import training


def run(*, output_dir: str, data_config: training.DataConfig,
        train_config: training.TrainConfig, fedavg_rounds: int, user: int, n: int = 10,
        log=program.print_flushed) -> dict:
  """Trains fedrecon, fedavg and centralized MF, evaluates, prints `user`'s top n."""
  started = time.perf_counter()
  split = training.prepare(data_config, log=log)
  for algorithm, rounds in (('fedrecon', train_config.rounds), ('fedavg', fedavg_rounds),
                            ('centralized', 0)):
    log(f'\n== training {algorithm}')
    training.train(data_config=data_config, output_dir=output_dir, split=split, log=log,
                   train_config=dataclasses.replace(train_config, algorithm=algorithm,
                                                    rounds=rounds))
  log('\n== evaluating')
  results = report.write(output_dir, split=split, log=log)
  with open(f'{output_dir}/report.md') as f:
    log(f.read())
  recommendations, rated, ranked_by = topn.recommend(output_dir, user=user, n=n, split=split,
                                                     log=log)
  log('== ' + topn.format_table(recommendations, user=user, rated=rated, algorithm='fedrecon',
                                ranked_by=ranked_by))
  log(f'\ndemo wall time {time.perf_counter() - started:.0f} s; outputs in {output_dir}')
  return results

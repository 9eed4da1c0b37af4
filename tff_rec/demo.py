r"""The recommendation demo of `./run.sh`: train, evaluate, report, recommend.

    python -m tff_rec.demo --output_dir=runs/rec

Bundled MovieLens; trains Federated Reconstruction (--rounds: 50, a demo
budget, half the `tff_rec.train` default; bench/README.md says what it costs),
the FedAvg comparison (--fedavg_rounds) and centralized MF, then
prints the comparison tables and --user's top 10. Each step is the library
call behind one binary, in one process, into one directory, so rerunning
resumes finished and unfinished steps alike.
"""

import dataclasses
import time

from absl import flags

from tff_common import cli
from tff_common import program_config
from tff_common import progress
from tff_rec import config
from tff_rec import flags as rec_flags
from tff_rec import report
from tff_rec import split as split_lib
from tff_rec import topn
from tff_rec import training

rec_flags.define_output_dir()
rec_flags.define_data_flags()
cli.define_program_flags(dataclasses.replace(config.TrainConfig(), rounds=50))
flags.DEFINE_integer('fedavg_rounds', 30, 'FedAvg rounds (demo budget).')
flags.DEFINE_integer('user', 15, 'The user whose top 10 is shown.')
flags.adopt_module_key_flags(rec_flags)  # so that --help lists them
FLAGS = flags.FLAGS


def main(argv):
  del argv
  started = time.perf_counter()
  log = progress.print_flushed
  train_config = dataclasses.replace(
      config.TrainConfig(), **dataclasses.asdict(cli.config_from_flags(program_config.ProgramConfig)))
  data_config = rec_flags.data_config()
  data_config.check()
  split = split_lib.load_and_split(data_config, log=log)
  topn.user_ratings(split, FLAGS.user)  # an unknown --user stops us now, not after training
  split = training.train_all(data_config=data_config, train_config=train_config,
                             fedavg_rounds=FLAGS.fedavg_rounds, output_dir=FLAGS.output_dir,
                             split=split)
  log('\n== evaluating')
  _, text = report.write(FLAGS.output_dir, split=split)
  log(text)
  recommendations, rated, ranked_by = topn.recommend(FLAGS.output_dir, user=FLAGS.user,
                                                     split=split)
  log('== ' + topn.format_table(recommendations, user=FLAGS.user, rated=rated,
                                algorithm='fedrecon', ranked_by=ranked_by))
  log(f'\ndemo wall time {time.perf_counter() - started:.0f} s; outputs in {FLAGS.output_dir}')


if __name__ == '__main__':
  cli.run(main)

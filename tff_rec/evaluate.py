r"""Evaluates and compares the recommenders trained in an output directory.

    python -m tff_rec.evaluate --output_dir=runs/rec
    python -m tff_rec.evaluate --output_dir=runs/rec --personalize=budget,finetune

Rating RMSE/MAE, HR@10/NDCG@10 (leave-one-out against 99 sampled unrated
items), Recall@20, for training users and held-out users, of fedrecon,
fedavg, centralized MF (trained here if missing) and popularity, and with
--personalize of FedRecon personalized on each device ('fedrecon+METHOD',
tff_rec.personalization). Writes
OUTPUT_DIR/report.md, summary.json and curves.png, and prints the report.
"""

from absl import flags

from tff_common import cli
from tff_common import progress
from tff_rec import flags as rec_flags
from tff_rec import report
from tff_rec import training

rec_flags.define_output_dir()
rec_flags.define_personalize_flags()
flags.adopt_module_key_flags(rec_flags)  # so that --help lists them
FLAGS = flags.FLAGS


def main(argv):
  del argv
  personalize = rec_flags.personalize_config()
  personalize.check()  # before minutes of baseline training
  split = training.train_baseline_if_missing(FLAGS.output_dir)
  _, text = report.write(FLAGS.output_dir, split=split, personalize=personalize)
  progress.print_flushed(text)


if __name__ == '__main__':
  cli.run(main)

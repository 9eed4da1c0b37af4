"""Federated plumbing shared by tff_credit and tff_rec (one owner per concept).

  aggregation     the one place an aggregator is chosen (`--aggregator`), for both jobs
  audit           what the server of a computation receives: its CLIENTS -> SERVER intrinsics
  checks          validation of settings: one InputError naming the flag, value and what is allowed
  dp              differential privacy of client updates: DPConfig, the seeded DP aggregator
  cli             what every binary does: quiet TF, the TFF runtime, one-line errors, flags -> configs
  errors          InputError / TrainingFailed (one line, exit 2), Interrupted (one line, exit 130/143)
  files           atomic writes (temporary file, then rename), data fingerprints
  partition       splitting one data set into clients: IID, size, label and feature skew
  program         the training program: open a run, sample clients, rounds, checkpoints, releases
  program_config  ProgramConfig: rounds, clients per round, checkpoint period, seed
  progress        progress lines, printed and flushed (no TensorFlow)
  robust_aggregation  median, trimmed mean and filtered mean of client updates (TFF factories)
  quiet           TensorFlow's start-up log noise, filtered without hiding errors
  run_dir         a run directory's file names and layout, and typed readers/writers
  runtime         TFF's C++ execution context over one or more workers (owned ones cannot outlive us)
  sparsification  top-k and random-k sparsified sums of client updates (TFF factories)
  study           a grid of runs x seeds: resumable cells, mean ± sd, study.md / .csv / .png
  worker          `python -m tff_common.worker`: serve or health-check a TFF worker on a host
  seeding         the seeding rule: per-(seed, round, client) generators, the global seed
"""

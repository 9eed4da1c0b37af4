"""The NumPy engine cross-checked against TensorFlow Federated, round by round.

Imports TensorFlow, TFF and the credit job (`tff_common`, `tff_credit`); the
engine itself (`numpy_fl`) imports none of them. Nothing is imported here
eagerly. Modules:
  tff_twin   the TFF twin: Keras models, client datasets, the credit job's learning process
  lockstep   both engines round by round: per-round rows, timing, the run's config, `run`
  report     compare.csv/png, async.csv/png, summary.json and the race's summary lines
  flags      the binary's flags, each named after the config field it sets
  __main__   the binary, `python -m numpy_fl.crosscheck`: flags -> config -> `lockstep.run`
"""

"""Federated personalized recommendation on MovieLens: one client per user.

  data            MovieLens ratings files (three formats) and the bundled MovieLens
  synthetic       tiny MovieLens-like ratings and file writers, for tests
  split           per-user train/test, held-out users, the item vocabulary
  config          DataConfig, TrainConfig: a run's settings
  model           two-head matrix factorization: the Keras model, its TFF wrappers, the loss
  params          the trained model as NumPy arrays
  reconstruction  on-device reconstruction of a user's own parameters (NumPy)
  personalization device-side personalization after training (budget, finetune); nothing leaves the device
  ranking         HR@k, NDCG@k, Recall@k, sampled unrated items
  clients         per-user tf.data datasets for TFF, built on demand
  algorithms      Federated Reconstruction and the FedAvg comparison as TFF processes
  centralized     the centralized MF upper bound and the popularity floor
  training        training runs into a run directory (used by the binaries only)
  evaluation      rating and ranking metrics of a model, federated evaluation
  report          the four-model comparison (+ fedrecon+METHOD): report.md, curves.png, summary.json
  attacks         what a curious server recovers from users' updates: rated items, rating values
  topn            a user's top-N, rebuilt on the device
  flags           the binaries' flags, named after config fields
  train, evaluate, recommend, demo, attack, study   the binaries (`python -m tff_rec.train --help`)
"""

"""Federated credit scoring across banks (cross-silo): every bank is a client.

  data         strict loading of the bundled credit table or any CSV with a label
  banks        dealing the rows to banks (IID, size, label, feature skew), per-bank splits
  preprocess   federated imputation and scaling statistics, the encoding schema
  federation   the banks' encoded rows, as arrays and as a TFF ClientData
  config       DataConfig, AlgorithmConfig, TrainConfig: a run's settings
  model        the Keras scorecard (logreg, MLP), its TFF wrapper, saved weights
  algorithms   FedSGD, FedAvg, FedProx, FedAdam, FedYogi, Mime-lite as TFF learning processes
  tensor_client_work  the FedAvg family and the federated evaluation on padded tensors, not
               datasets (--client_data=tensors): the same batches, a round ~10x cheaper
  training     federated training into a run directory (used by the binaries only)
  poisoning    a simulated poisoning bank (scale, sign_flip, label_flip) for the robustness study
  dp_sgd       customer-level DP-SGD inside a bank, as TFF client work (per-example clipping, noise)
  attacks      what a curious server recovers from the banks' updates: records, batches, label shares
  metrics      AUC, KS, Gini, Brier, log loss, PSI, AUC standard error
  personalization  what each bank does with the released model: fine-tuning, a mixture with its
               local model, chosen on its validation rows
  evaluation   federated vs local-only vs centralized vs personalized: report.md, roc.png, summary.json
  flags        the binaries' flags, named after config fields
  train, evaluate, demo, attack, study   the binaries (`python -m tff_credit.train --help`)
"""

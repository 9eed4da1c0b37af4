"""Federated personalized recommendation on MovieLens: one client per user.

data: ratings files and the bundled MovieLens.  split: per-user train/test,
held-out users, item vocabulary.  clients: lazy per-user datasets.
model: matrix factorization (Keras, TFF and NumPy views).  training: the
federated and centralized trainers.  ranking: HR/NDCG/Recall.
evaluation: the comparison report.  recommend: on-device top-N.
"""

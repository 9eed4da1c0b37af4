"""Federated credit scoring across banks (cross-silo): data, model, binaries."""

"""Federated plumbing shared by tff_credit and tff_rec.

runtime: TFF's C++ execution context with an owned worker process.
quiet: TF log noise for binaries.  seeding: one seed for all generators.
"""

"""Scheduling: the rewritten graph cut into kernels, each of one kind."""

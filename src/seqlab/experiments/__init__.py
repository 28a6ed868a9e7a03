"""Experiments built on the training engine: several runs trained and compared (seqlab compare)."""

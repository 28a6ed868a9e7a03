"""Experiments built on the training engine: several runs trained and compared (seqlab compare), and
the forecasting benchmark (seqlab forecast: every forecaster on one series, split and budget)."""

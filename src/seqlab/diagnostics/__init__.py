"""Plots and measurements of what a model does (curves, gradients, gates, attention)."""

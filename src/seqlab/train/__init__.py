"""The training engine: experiment configs, the trainer, optimisers, metrics, reporting, checkpoints, processes."""

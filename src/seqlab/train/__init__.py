"""The training engine: experiment configs, the trainer, checkpoints and run directories."""

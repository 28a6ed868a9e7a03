"""Tiny runs trained in-process for the decoding tests: a few steps, one seed, no TensorBoard, no progress bar."""

from __future__ import annotations


def train_tiny(tmp, model: dict, data: dict, steps: int):
    """Train ``model`` on ``data`` for ``steps`` steps (batch 16, lr 3e-3, seed 0) into a run under ``tmp``."""
    from seqlab.runs import train_experiment
    from seqlab.train.config import experiment_from_dict

    train = {"batch_size": 16, "lr": 3e-3, "max_steps": steps, "eval_every": steps, "log_every": steps}
    train.update(tensorboard=False, layer_norms_every=0, seed=0)
    return train_experiment(
        experiment_from_dict({"model": model, "data": data, "train": train}), out=tmp, argv=[], progress=False
    )

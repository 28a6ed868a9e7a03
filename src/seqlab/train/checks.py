"""Settings that cannot work with a run's data, found before anything is written or trained."""

from __future__ import annotations

from torch.utils.data import Dataset

from ..task import Task
from .config import TrainConfig
from .contracts import HasLengths, Streams
from .metrics import task_metric_names


def check_trainable(
    cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, task: Task | str, world_size: int = 1
) -> None:
    """Settings that cannot work with this data, found before anything is written or trained."""
    if cfg.tbptt_steps and not isinstance(train_set, Streams):
        raise ValueError(
            f"train.tbptt_steps={cfg.tbptt_steps} needs a stream dataset (a language-model "
            f"dataset such as char_lm); this one has no .streams(); set train.tbptt_steps=0"
        )
    if cfg.bucket and not isinstance(train_set, HasLengths):
        raise ValueError(
            f"train.bucket={cfg.bucket} batches examples of similar length, but this dataset has no "
            f"per-example lengths (seq2seq datasets have them); set train.bucket=0"
        )
    if cfg.batch_size % world_size:
        raise ValueError(
            f"train.batch_size={cfg.batch_size} must be divisible by the number of processes "
            f"({world_size}): it is the global batch, split evenly across them"
        )
    if cfg.metric and cfg.metric not in task_metric_names(task):
        raise ValueError(
            f"train.metric={cfg.metric!r} is not measured for task '{task}'; "
            f"choose one of {', '.join(task_metric_names(task))}"
        )
    if len(train_set) == 0:
        raise ValueError("the training split is empty")

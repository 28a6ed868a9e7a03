"""Task metrics (a ``Task``'s accuracy and loss) and ``evaluate``, the mean of them over a dataset."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..task import Task
from .contracts import batches, call_model
from .distributed import DistInfo, DistributedBatchSampler, all_reduce

ACCURACY_TASKS = (Task.CLASSIFICATION, Task.SEQUENCE_LABELING)


def task_metrics(task: Task | str, output: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sums over a batch (not means) of the task's metrics, so they pool over a dataset.

    classification: output (B, C), y (B,); sequence_labeling: output (B, T, C), y (B, T), and
    each example counts its fraction of correct steps.
    """
    if task == Task.CLASSIFICATION:
        return {"accuracy": (output.argmax(-1) == y).sum()}
    if task == Task.SEQUENCE_LABELING:
        return {"accuracy": (output.argmax(-1) == y).float().mean(-1).sum()}
    return {}


def task_metric_names(task: Task | str) -> tuple[str, ...]:
    return ("loss", "accuracy") if task in ACCURACY_TASKS else ("loss",)


def default_metric(task: Task | str) -> str:
    """The validation metric that picks best.pt and drives early stopping."""
    return "accuracy" if task in ACCURACY_TASKS else "loss"


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    task: Task | str,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    dist_info: DistInfo = DistInfo(),
) -> dict[str, float]:
    """Mean loss and task metrics over ``dataset`` in eval mode (train mode is restored after).

    Metrics are means per example. The loss is too, except for a model whose loss averages over a
    varying number of target tokens (``model.loss_tokens(y)``, seq2seq): then each batch's loss
    counts once per token, so the mean is per token whatever the batch size or the number of
    processes. Under torchrun each process evaluates its share of every batch and the sums are
    pooled, so all agree exactly.
    """
    was_training = model.training
    model.eval()
    names = task_metric_names(task)
    dtype = _sum_dtype(device)
    # metric sums (the loss's weighted by loss_weight), then the examples, then the loss's weights
    totals = torch.zeros(len(names) + 2, dtype=dtype, device=device)
    loss_weight = getattr(model, "loss_tokens", None) or (lambda y: len(y))
    sampler = DistributedBatchSampler(len(dataset), batch_size, seed=0, epoch=0, shuffle=False, info=dist_info)
    for x, y in batches(dataset, sampler):
        if len(x) == 0:
            continue
        x, y = x.to(device), y.to(device)
        output, loss, _ = call_model(model, x, y)
        weight = torch.as_tensor(loss_weight(y), dtype=dtype, device=device)
        sums = {"loss": loss.detach().to(dtype) * weight, **task_metrics(task, output, y)}
        count = torch.tensor(float(len(x)), dtype=dtype, device=device)
        totals += torch.stack([*(sums[k].to(dtype) for k in names), count, weight])
    model.train(was_training)
    all_reduce(totals, dist_info)
    if totals[-2] == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return {k: (v / totals[-1 if k == "loss" else -2]).item() for k, v in zip(names, totals[:-2])}


def _sum_dtype(device: torch.device | str) -> torch.dtype:
    """float64 for sums of metrics, except on MPS, which has none."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64

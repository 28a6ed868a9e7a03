"""What every seqlab dataset is: tensors in memory, indexed as ``ds[i] -> (x, y)``."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import Dataset


class TensorSequenceDataset(Dataset):
    """Inputs ``x`` (N, T, C) and targets ``y`` (N, ...) held as tensors.

    The trainer batches such datasets by slicing ``tensors`` with a shuffled index, so there is
    no per-sample Python in the training loop.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} vs {len(y)}")
        self.x, self.y = x, y

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Splits(NamedTuple):
    """A task's three datasets and what a model needs to know about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    info: dict  # e.g. {"input_size": 8, "num_classes": 10, "task": "classification"}


def stratified_split(labels: torch.Tensor, fractions: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    """Indices for consecutive parts of each class, in the given fractions (the last takes the rest)."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for cls in torch.unique(labels):
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        start = 0
        for p, frac in enumerate(fractions):
            n = int(round(frac * len(idx)))
            parts[p].append(idx[start:start + n])
            start += n
        parts[-1].append(idx[start:])
    # Shuffle within each part so classes are interleaved, deterministically.
    return [torch.cat(p)[torch.randperm(sum(len(t) for t in p), generator=g)] for p in parts]

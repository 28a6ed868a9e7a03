"""What the engine asks of datasets, models and model configs, as Protocols instead of ``hasattr``.

A dataset is ``len(ds)`` and ``ds[i] -> (x, y)``; a model is ``model(x, y) -> (output, loss)``
(STYLE.md, point 6). Each Protocol below names one more thing that some of them offer, and what
the engine does with it. They are structural: a class satisfies one by having the attribute,
without inheriting from it, and ``isinstance`` checks it (by the attribute's presence only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import Dataset, default_collate

from .distributed import DistributedBatchSampler


@runtime_checkable
class InMemory(Protocol):
    """Examples held as tensors (or views that an index tensor slices): batches are cut without per-example Python."""

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]: ...


@runtime_checkable
class Streams(Protocol):
    """A token stream cut into ``batch_size`` parallel rows, for truncated BPTT (``train.tbptt_steps``).

    ``streams(B, bptt)[i]`` is ``(x, y)``, each (B, t <= bptt), and row b of chunk i + 1 continues
    row b of chunk i, so the trainer carries the recurrent state from one chunk to the next.
    """

    def streams(self, batch_size: int, bptt: int) -> Sequence[tuple[torch.Tensor, torch.Tensor]]: ...


@runtime_checkable
class HasLengths(Protocol):
    """Per-example lengths (N,), which ``train.bucket`` batches by (seq2seq: source + target)."""

    @property
    def lengths(self) -> torch.Tensor: ...


@runtime_checkable
class TokenIds(Protocol):
    """The split's whole text as one id sequence (N,): a language model is scored on it by the chain rule."""

    ids: torch.Tensor


@runtime_checkable
class ChecksData(Protocol):
    """A model config with its own checks of the data's ``info`` (seq2seq: vocabularies, special ids)."""

    def check_data(self, info: dict[str, Any]) -> None: ...


@runtime_checkable
class FixedInputShape(Protocol):
    """A model config whose examples have one shape (a ViT's images, no batch dim), compared with
    the data's ``info["input_shape"]``; ``settings_for_input`` names the keys that would read
    another shape ({} when none does)."""

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def settings_for_input(self, shape: tuple[int, ...]) -> dict[str, Any]: ...


@runtime_checkable
class ContextWindow(Protocol):
    """A model config whose model reads at most ``block_size`` tokens (a GPT)."""

    block_size: int


def batches(dataset: Dataset, sampler: DistributedBatchSampler) -> Iterator[tuple[torch.Tensor, ...]]:
    """``(x, y)`` (this process's rows) for each index batch of ``sampler``.

    In-memory datasets (:class:`InMemory`) are sliced with the index tensor: no per-sample Python.
    """
    tensors = dataset.tensors if isinstance(dataset, InMemory) else None
    for idx, _ in sampler:
        if tensors is not None:
            yield tuple(t[idx] for t in tensors)
        else:
            yield tuple(default_collate([dataset[int(i)] for i in idx]))


def call_model(model, x, y, state=None, stream: bool = False):
    """(output, loss, state) for stream models, (output, loss, None) for the rest."""
    if stream:
        return model(x, y, state=state)
    output, loss = model(x, y)[:2]
    return output, loss, None

"""DistributedDataParallel set-up for runs started by ``torchrun`` (gloo on CPU, nccl on CUDA).

``torchrun --nproc_per_node N -m seqlab train CONFIG`` sets RANK, WORLD_SIZE and LOCAL_RANK; a
plain ``seqlab train`` leaves them unset and runs as a single process (world size 1).

``train.batch_size`` is the *global* batch: each of the N processes computes on
``batch_size / N`` examples of every batch, and DDP averages the gradients, so N processes take
the same optimiser steps as one process with the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def shard(batch: tuple[torch.Tensor, ...], info: DistInfo) -> tuple[torch.Tensor, ...]:
    """This process's rows of a global batch: rows rank, rank + N, rank + 2N, ..."""
    if not info.enabled:
        return batch
    return tuple(t[info.rank::info.world_size] for t in batch)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

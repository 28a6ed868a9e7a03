"""The device of a run, and DistributedDataParallel set-up for runs started by ``torchrun`` (gloo on CPU,
nccl on CUDA).

``torchrun --nproc_per_node N -m seqlab train CONFIG`` sets RANK, WORLD_SIZE and LOCAL_RANK; a
plain ``seqlab train`` leaves them unset and runs as a single process (world size 1).

``train.batch_size`` is the *global* batch. The distributed sampler below gives every process
the same shuffled order and each one rows rank, rank + N, ... of every global batch; each
process scales its loss by its share of the batch, so after DDP averages the gradients the step
equals one process's step on the whole batch, uneven last batch included.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..config import ConfigError


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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``train.device`` (auto, cpu, cuda, mps) as a device; CUDA device ``local_rank`` under torchrun."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("mps") if has_mps else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    if name == "mps" and not has_mps:
        raise ConfigError("train.device=mps but MPS is not available; use train.device=cpu or auto")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def shutdown(wait: bool = True) -> None:
    """Leave the process group; with ``wait``, once every process is done with it.

    Tearing down while a peer still talks to this process can abort the peer; but after an error
    that only this process saw, waiting for the others could hang, hence ``wait=False`` there.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def batch_rows(n: int, batch_size: int, world_size: int = 1, drop_small_last: bool = False) -> list[int]:
    """Rows of each global batch of an epoch over ``n`` examples: full batches, then the rest.

    With ``drop_small_last``, a last batch with fewer rows than processes is left out (some
    process would get no rows), as DistributedSampler's ``drop_last`` would.
    """
    rows = [min(batch_size, n - start) for start in range(0, n, batch_size)]
    if drop_small_last and rows and rows[-1] < world_size:
        rows.pop()
    return rows


class DistributedBatchSampler:
    """Index batches of one epoch for one process: ``(local_indices, global_batch_size)``.

    The order depends only on (seed, epoch), so every process, and a resumed run, draws the same
    one; ``skip`` passes over the batches an interrupted epoch had already consumed.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        shuffle: bool = True,
        info: DistInfo = DistInfo(),
        skip: int = 0,
        drop_small_last: bool = False,
        lengths: torch.Tensor | None = None,
        bucket: int = 0,
    ):
        self.batch_size, self.info, self.skip = batch_size, info, skip
        self.rows = batch_rows(n, batch_size, info.world_size, drop_small_last)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
        if lengths is not None and bucket > 0:
            self.order = bucket_by_length(self.order, lengths, batch_size, bucket, g)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        for b in range(self.skip, len(self.rows)):
            idx = self.order[b * self.batch_size : b * self.batch_size + self.rows[b]]
            yield (idx[self.info.rank :: self.info.world_size] if self.info.enabled else idx), len(idx)


def bucket_by_length(
    order: torch.Tensor, lengths: torch.Tensor, batch_size: int, pool: int, generator: torch.Generator
) -> torch.Tensor:
    """``order`` rearranged so that each batch holds examples of similar length (less padding).

    Consecutive pools of ``pool`` batches are sorted by ``lengths`` (N,), then the full batches are
    shuffled; a smaller last batch stays last. Every index is kept exactly once.
    """
    size = batch_size * pool
    order = torch.cat([chunk[torch.argsort(lengths[chunk], stable=True)] for chunk in order.split(size)])
    n_full = len(order) // batch_size
    blocks = order[: n_full * batch_size].view(n_full, batch_size)  # (batches, batch_size)
    blocks = blocks[torch.randperm(n_full, generator=generator)]
    return torch.cat([blocks.reshape(-1), order[n_full * batch_size :]])


def shard_rows(t: torch.Tensor, info: DistInfo, dim: int = 0) -> torch.Tensor:
    """This process's rows rank, rank + N, ... of ``t`` along ``dim``."""
    if not info.enabled:
        return t
    index = torch.arange(info.rank, t.size(dim), info.world_size, device=t.device)
    return t.index_select(dim, index)


def gather_rows(t: torch.Tensor, info: DistInfo, dim: int = 0) -> torch.Tensor:
    """Inverse of ``shard_rows``: every process's rows put back in their global order (a collective)."""
    if not info.enabled:
        return t
    sizes = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(info.world_size)]
    dist.all_gather(sizes, torch.tensor([t.size(dim)], device=t.device))
    largest = int(max(s.item() for s in sizes))
    pad = list(t.shape)
    pad[dim] = largest - t.size(dim)
    padded = torch.cat([t, t.new_zeros(pad)], dim=dim)
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded.contiguous())
    total = int(sum(s.item() for s in sizes))
    shape = list(t.shape)
    shape[dim] = total
    out = t.new_empty(shape)
    for r, (part, size) in enumerate(zip(parts, sizes)):
        index = torch.arange(r, total, info.world_size, device=t.device)
        out.index_copy_(dim, index, part.narrow(dim, 0, int(size.item())))
    return out


def gather_objects(obj, info: DistInfo) -> list:
    """Every process's ``obj`` (picklable), by rank (a collective); ``[obj]`` when there is one."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def seed_this_process(seed: int, info: DistInfo) -> None:
    """Under torchrun, give each process its own torch random stream, ``seed + rank`` (as nanoGPT does):
    called once the model's weights are equal everywhere, so that dropout masks and teacher forcing's
    coin flips differ between the processes' rows as they do between one process's rows. A single
    process keeps the stream ``train.seed`` started."""
    if info.enabled:
        torch.manual_seed(seed + info.rank)


def all_reduce(t: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """Sum (or max, min) of ``t`` over the processes; ``t`` itself when there is one."""
    if info.enabled:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t

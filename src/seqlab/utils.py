"""Small helpers shared by every layer: parameter counts, seeding, eval mode, likelihood summaries,
atomic file writes, the memory left to allocate."""

from __future__ import annotations

import math
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch


def count_parameters(module: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices) so a CPU run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``with eval_mode(model):`` runs the block in eval mode, then gives every submodule its own mode back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def log_likelihood_summary(log_likelihood: float, tokens: int) -> dict[str, float]:
    """log P (nats) of ``tokens`` scored tokens -> log_likelihood, tokens, nll_per_token = -log P / tokens,
    perplexity = exp(NLL) and bits_per_char = NLL / ln 2."""
    nll = -log_likelihood / tokens
    return {
        "log_likelihood": log_likelihood,
        "tokens": tokens,
        "nll_per_token": nll,
        "perplexity": math.exp(nll) if nll < 700 else math.inf,  # exp overflows a float beyond ~709.78
        "bits_per_char": nll / math.log(2),
    }


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write ``path`` through ``write(fileobj)`` into a temp file beside it, then rename.

    A crash mid-write leaves the old file (or nothing), never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``atomic_write`` of a text, in UTF-8 whatever the locale (config.toml is read back as UTF-8)."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def available_memory() -> int | None:
    """Bytes this process can still allocate, as far as it can tell: the system's MemAvailable, or less
    under an address-space limit (``ulimit -v``, RLIMIT_AS); None where neither can be read."""
    room = []
    try:
        with open("/proc/meminfo") as fh:
            room += [int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/status") as fh:
                used = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
            room.append(max(soft - used, 0))
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    return min(room) if room else None


def is_out_of_memory(err: BaseException) -> bool:
    """True for an allocation that failed: MemoryError, torch's CPU allocator error, CUDA out of memory."""
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and ("can't allocate memory" in str(err) or "out of memory" in str(err))
    )


def format_bytes(n: float) -> str:
    """``"3.2 GiB"``, ``"12.5 MiB"``, ``"900 bytes"``: a size in the unit that reads best."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} bytes"

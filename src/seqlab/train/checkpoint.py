"""Checkpoints: plain dicts of tensors and primitives (RNG states included), written atomically, loaded with
weights_only=True."""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, unsafe or from another configuration."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Serialise in memory first, then write atomically: a crash never leaves half a file."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write(path, lambda fh: fh.write(buf.getbuffer()))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``: a checkpoint that would run code on load is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:  # a file that cannot be opened is not a damaged one (is_zipfile would answer False for both)
        open(path, "rb").close()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one has no central directory
        raise _damaged(
            path, f"{path.stat().st_size} bytes, not the zip archive torch.save writes: cut off or not a checkpoint"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if damage := _zip_damage(path):  # a damaged pickle fails weights_only's checks too: say which it is
            raise _damaged(path, damage) from None
        raise CheckpointError(
            f"refusing to load {path}: it holds objects that are not plain tensors and values "
            f"(torch.load weights_only=True rejected it: {str(err).splitlines()[0]}). "
            f"Only load checkpoints written by seqlab or from a source you trust."
        ) from None
    except MemoryError:
        raise
    except Exception as err:  # a damaged archive fails in many ways (RuntimeError, EOFError, OSError, ...)
        raise _damaged(path, str(err).splitlines()[0] if str(err) else type(err).__name__) from None


def _zip_damage(path: Path) -> str | None:
    """What is wrong with the zip archive: an entry whose bytes fail their CRC, or a broken structure; None if
    every entry reads back intact."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f"its zip structure is broken: {type(err).__name__}: {err}"
    return f"its entry {bad} fails its CRC check" if bad else None


def _damaged(path: Path, why: str) -> CheckpointError:
    """A damaged checkpoint's error: what is wrong, and the run's other checkpoints to use instead."""
    others = sorted(p.name for p in path.parent.glob("*.pt") if p != path)
    instead = f"; other checkpoints beside it: {', '.join(others)}" if others else ""
    return CheckpointError(f"checkpoint {path} is damaged and cannot be read ({why}){instead}")


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain values (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # One state per GPU of the machine that saved it: a machine with fewer restores what it has.
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)

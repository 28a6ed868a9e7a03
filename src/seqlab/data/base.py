"""What every seqlab dataset is: tensors in memory, indexed as ``ds[i] -> (x, y)``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from ..config import ConfigError, check_at_least


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
    info: dict  # e.g. {"input_size": 8, "num_classes": 10, "task": Task.CLASSIFICATION} (seqlab.task)


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
            parts[p].append(idx[start : start + n])
            start += n
        parts[-1].append(idx[start:])
    # Shuffle within each part so classes are interleaved, deterministically.
    return [torch.cat(p)[torch.randperm(sum(len(t) for t in p), generator=g)] for p in parts]


class DataError(ConfigError):
    """A data file that is missing, empty, corrupt or not in the expected format.

    A subclass of ``ConfigError`` because, like a bad config key, it is the user's to fix (a
    path, a download), so the CLI reports it without a traceback. Messages name the file, and
    the line where there is one, what was expected and what was found.
    """


class DataWarning(UserWarning):
    """Input that was skipped in a documented way; the count is also returned in ``info``."""


def skipped_message(count: int, total: int, reason: str, unit: str = "lines") -> str:
    """``"skipped 12 of 135,842 lines: fewer than 2 fields"``."""
    return f"skipped {count:,} of {total:,} {unit}: {reason}"


def read_utf8(path: str | Path, what: str = "text file") -> str:
    """The whole of ``path`` as text; a missing, empty or non-UTF-8 file is a DataError naming it.

    A UTF-8 byte-order mark is dropped and ``\\r\\n`` line ends are read as ``\\n``.
    """
    path = Path(path).expanduser()
    check_file(path, what)
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the {what} is empty (expected UTF-8 text, found {len(raw)} bytes of whitespace)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {column}); "
            f"expected a UTF-8 {what}: re-encode it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def check_file(path: Path, what: str) -> None:
    """A DataError unless ``path`` is a file: a folder given where a file belongs is named as one."""
    if path.is_dir():
        raise DataError(f"{path} is a folder, expected a {what}: give the path of the file itself")
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")


def fingerprint(path: str | Path) -> dict:
    """``{"path": absolute path, "size": bytes, "sha256": hex}`` of a data file, so a run can tell
    later whether the file it reads is still the one it was trained on."""
    path = Path(path).expanduser().resolve()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def embedded_fingerprint(name: str, sha256: str, content: bytes | str | None = None) -> dict:
    """The fingerprint of a file shipped inside seqlab: its known sha256, checked whenever it is read
    (a seqlab release that changes the file changes it), and its content's size when given."""
    size = None if content is None else len(content.encode("utf-8") if isinstance(content, str) else content)
    return {"path": f"embedded:{name}", "size": size, "sha256": sha256}


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Sizes (train, val, test) of ``n`` items; val and test are rounded, train takes the rest."""
    n_val, n_test = int(round(val_fraction * n)), int(round(test_fraction * n))
    return n - n_val - n_test, n_val, n_test


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"data.val_fraction and data.test_fraction must be in [0, 1) and sum below 1, "
            f"got {val_fraction} and {test_fraction}"
        )


def check_positive(cfg, *keys: str) -> None:
    """Each ``data.<key>`` is at least 1."""
    check_at_least("data", cfg, *keys)

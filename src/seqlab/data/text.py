"""Character-level language modelling over any UTF-8 text file.

The text is cut chronologically into train, val and test parts (no window crosses a boundary).
Targets are the inputs shifted by one character: ``x[t] = c_t``, ``y[t] = c_{t+1}``.

- Training windows start at random offsets (drawn from ``seed``), ``num_windows`` of them;
  val and test are the consecutive, non-overlapping windows of their part, so evaluating them
  covers the part once.
- :func:`batchify` and :class:`StreamChunks` give the sequential layout that truncated BPTT
  needs: the part is cut into B equal streams, one per batch row, and chunk i + 1 of stream b
  continues chunk i of stream b exactly, so a model may carry its hidden state from one chunk
  to the next (detached) and still see one unbroken text per row.

The default text is an embedded sample, the first 1,500 lines (40,105 characters) of Tiny
Shakespeare; ``path`` reads any other UTF-8 file, e.g. ``../shared/data/tinyshakespeare/input.txt``.
"""

from __future__ import annotations

import gzip
import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..task import Task
from .base import (
    DataError,
    Splits,
    check_file,
    check_fractions,
    embedded_fingerprint,
    fingerprint,
    read_utf8,
    split_counts,
)
from .vocab import Vocabulary

SAMPLE_SHA256 = "89b98a6f4ee9cb8dc1f6e14f30c1c6592a6dc2d60b2281ccc96e9f8f9e7e2ca8"


def load_sample_text() -> str:
    """The embedded Tiny Shakespeare sample, checked against its sha256."""
    raw = gzip.decompress(resources.files("seqlab.data").joinpath("embedded/shakespeare_sample.txt.gz").read_bytes())
    if hashlib.sha256(raw).hexdigest() != SAMPLE_SHA256:
        raise RuntimeError("seqlab's embedded shakespeare_sample.txt.gz is corrupt (sha256 mismatch): reinstall seqlab")
    return raw.decode("utf-8")


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A 1-D id sequence (N,) -> B = ``batch_size`` consecutive streams (B, N // B), the tail dropped.

    Row b is ``ids[b * L:(b + 1) * L]`` with L = N // B.
    """
    if ids.dim() != 1:
        raise ValueError(f"expected a 1-D id sequence, got shape {tuple(ids.shape)}")
    L = len(ids) // batch_size
    if L < 2:
        raise ValueError(f"{len(ids)} ids are too few for {batch_size} streams of at least 2")
    return ids[: batch_size * L].view(batch_size, L)  # (B, L)


class StreamChunks(Dataset):
    """Consecutive chunks of B parallel streams, for truncated BPTT: ``ds[i] -> (x, y)``, each (B, bptt).

    x = streams[:, i*bptt : (i+1)*bptt] and y is x shifted by one step; the last chunk may be
    shorter. Read the chunks in order and carry the hidden state across them; do not shuffle.
    """

    def __init__(self, streams: torch.Tensor, bptt: int):
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        self.streams, self.bptt = streams, bptt  # (B, L)

    def __len__(self) -> int:
        return math.ceil((self.streams.shape[1] - 1) / self.bptt)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"chunk {i} out of range for {len(self)} chunks")
        start = i * self.bptt
        t = min(self.bptt, self.streams.shape[1] - 1 - start)
        return self.streams[:, start : start + t], self.streams[:, start + 1 : start + 1 + t]  # (B, t), (B, t)


class WindowView:
    """``view[index]`` = ids[s + shift : s + shift + T] for the starts s = starts[index]: (n, T), cut when indexed.

    Indexed like the (N, T) tensor it stands for (an int, a slice or an index tensor), it holds N
    start offsets instead of N * T ids, so a run may draw a fresh random window for every row of
    every batch (nanoGPT's ``get_batch``) at no memory cost.
    """

    def __init__(self, ids: torch.Tensor, starts: torch.Tensor, seq_len: int, shift: int = 0):
        self.ids, self.starts, self.seq_len, self.shift = ids, starts, seq_len, shift

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.starts), self.seq_len))

    def __getitem__(self, index) -> torch.Tensor:
        starts = self.starts[index]  # (n,) or ()
        return self.ids[starts.unsqueeze(-1) + self.shift + torch.arange(self.seq_len)]  # (n, T) or (T,)


class CharLMDataset(Dataset):
    """Windows x (N, T) and next-character targets y (N, T) of a part's id sequence ``ids``.

    Window n starts at ``starts[n]``; ``tensors`` are :class:`WindowView` s that cut the windows of
    a batch when the trainer indexes them, ``x`` and ``y`` all of them as tensors.
    """

    def __init__(self, ids: torch.Tensor, starts: torch.Tensor, seq_len: int, vocab: Vocabulary):
        self.ids, self.starts, self.seq_len, self.vocab = ids, starts, seq_len, vocab

    @property
    def tensors(self) -> tuple[WindowView, WindowView]:
        return WindowView(self.ids, self.starts, self.seq_len), WindowView(self.ids, self.starts, self.seq_len, 1)

    @property
    def x(self) -> torch.Tensor:
        return self.tensors[0][:]  # (N, T)

    @property
    def y(self) -> torch.Tensor:
        return self.tensors[1][:]  # (N, T)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i):
        x, y = self.tensors
        return x[i], y[i]  # (T,), (T,)

    def streams(self, batch_size: int, bptt: int) -> StreamChunks:
        """This part as ``batch_size`` streams in consecutive chunks of ``bptt`` steps (truncated BPTT)."""
        return StreamChunks(batchify(self.ids, batch_size), bptt)


@dataclass(frozen=True)
class CharLMConfig:
    """Next-character prediction over a UTF-8 text, cut into train/val/test in that order."""

    name: str = "char_lm"
    path: str = ""  # "" = the embedded Tiny Shakespeare sample
    seq_len: int = 64  # window length T
    num_windows: int = 0  # random training windows; 0: as many as fit the training part end to end
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if self.seq_len < 1:
            raise ValueError(f"data.seq_len must be >= 1, got {self.seq_len}")
        if self.num_windows < 0:
            raise ValueError(f"data.num_windows must be >= 0 (0: one pass), got {self.num_windows}")
        check_fractions(self.val_fraction, self.test_fraction)


# Where to get the texts that presets name, for the message when one is missing.
SOURCES = {
    "tinyshakespeare/input.txt": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
}


def build_char_lm(cfg: CharLMConfig = CharLMConfig()) -> Splits:
    if cfg.path and Path(cfg.path).expanduser().is_dir():
        check_file(Path(cfg.path).expanduser(), "text file")  # a folder is named as one
    if cfg.path and not Path(cfg.path).expanduser().is_file():
        url = next((u for name, u in SOURCES.items() if Path(cfg.path).as_posix().endswith(name)), None)
        get = f"download {url} to that path" if url else "check data.path"
        raise DataError(
            f"text file not found: {cfg.path}; {get}, pass --data.path=YOUR_FILE.txt, "
            f"or --data.path= (empty) for the embedded 40,105-character Shakespeare sample"
        )
    text = read_utf8(cfg.path) if cfg.path else load_sample_text()
    where = cfg.path or "the embedded sample"
    files = {
        "data.path": fingerprint(cfg.path)
        if cfg.path
        else embedded_fingerprint("shakespeare_sample.txt.gz", SAMPLE_SHA256, text)
    }
    # The vocabulary is every character of the whole text (as char-rnn does), so nothing is unknown.
    vocab = Vocabulary(sorted(set(text)), specials=())
    ids = torch.tensor(vocab.encode(text), dtype=torch.int64)  # (N,)
    n_train, n_val, n_test = split_counts(len(ids), cfg.val_fraction, cfg.test_fraction)
    bounds = [(0, n_train), (n_train, n_train + n_val), (n_train + n_val, len(ids))]
    T = cfg.seq_len
    for part, (a, b) in zip(("train", "val", "test"), bounds):
        too_short = b - a < T + 1 and (part == "train" or b > a)  # an empty val or test part is allowed
        if too_short:
            raise DataError(
                f"{where}: the {part} part has {b - a:,} characters, expected at least seq_len + 1 = {T + 1}; "
                f"use a longer text, a smaller data.seq_len or other fractions"
            )
    parts = []
    g = torch.Generator().manual_seed(cfg.seed)
    for part, (a, b) in zip(("train", "val", "test"), bounds):
        part_ids = ids[a:b]
        if part == "train":
            n = cfg.num_windows or (len(part_ids) - 1) // T
            starts = torch.randint(0, len(part_ids) - T, (n,), generator=g)  # last start: len - T - 1
        else:
            starts = torch.arange(0, max(len(part_ids) - T, 0), T)
        parts.append(CharLMDataset(part_ids, starts, T, vocab))
    counts = Counter(ids[:n_train].tolist())
    unigram = -sum(c / n_train * math.log(c / n_train) for c in counts.values())
    info = {
        "task": Task.LANGUAGE_MODEL,
        "metric": "cross_entropy",
        "vocab_size": len(vocab),
        "vocab": vocab,
        "seq_len": T,
        "input_shape": (T,),
        "target_shape": (T,),
        "num_chars": {"train": n_train, "val": n_val, "test": n_test},
        "path": str(Path(cfg.path)) if cfg.path else "embedded:shakespeare_sample.txt.gz",
        "files": files,
        "baseline": {
            "cross_entropy_uniform": math.log(len(vocab)),
            "cross_entropy_unigram": unigram,
            "strategy": "uniform: every character equally likely; unigram: training-part frequencies",
        },
        "note": "bits per character = cross_entropy / ln 2",
    }
    return Splits(*parts, info)

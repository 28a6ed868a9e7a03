"""Sequence-to-sequence tasks: copy, reverse and sort; date normalisation (sentence-pair files: pairs.py).

Every task here gives a :class:`Seq2SeqDataset` whose tensors are padded token ids:

- ``x`` (N, S): source ids followed by ``<eos>``, then ``<pad>`` up to the split's longest source;
- ``y`` (N, U): ``<bos>``, target ids, ``<eos>``, then ``<pad>``;
- ``x_lengths`` (N,), ``y_lengths`` (N,): the unpadded lengths, ``<eos>`` (and ``<bos>``) included.

Padding is always at the end and ``<pad>`` is id 0, so ``lengths == (ids != 0).sum(-1)``: a
trainer that only slices ``(x, y)`` can recover them. A decoder is trained with teacher forcing
on ``y[:, :-1]`` predicting ``y[:, 1:]``. ``info`` holds both vocabularies.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..task import Task
from .base import (
    Splits,
    TensorSequenceDataset,
    check_positive,
)
from .vocab import Vocabulary

LAYOUT = (
    "x (N, S): source ids + <eos>, right-padded with <pad>=0; y (N, U): <bos> + target ids + <eos>, "
    "right-padded; lengths = (ids != 0).sum(-1); teacher forcing: y[:, :-1] -> y[:, 1:]"
)


class Seq2SeqDataset(TensorSequenceDataset):
    """Padded source ids x (N, S) and target ids y (N, U), with their lengths and vocabularies."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x_lengths: torch.Tensor,
        y_lengths: torch.Tensor,
        src_vocab: Vocabulary,
        tgt_vocab: Vocabulary,
        pairs: Sequence | None = None,
    ):
        super().__init__(x, y)
        self.x_lengths, self.y_lengths = x_lengths, y_lengths
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        # The (source, target) token lists as read, before <unk>: references for BLEU and exact match
        # score the real words, so a reference with an unknown word cannot be matched by writing <unk>.
        self.pairs = pairs

    @property
    def lengths(self) -> torch.Tensor:
        """(N,) source plus target length of each example: what a length-bucketing sampler sorts by."""
        return self.x_lengths + self.y_lengths


def pad(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of ids -> (N, L_max) int64 right-padded with ``pad_id``, and lengths (N,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), pad_id, dtype=torch.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.int64)
    return out, lengths


def encode_pairs(
    pairs: Sequence[tuple[Sequence[str], Sequence[str]]], src_vocab: Vocabulary, tgt_vocab: Vocabulary
) -> Seq2SeqDataset:
    """Token pairs -> a padded :class:`Seq2SeqDataset` (see the module docstring for the layout)."""
    x, x_len = pad([src_vocab.encode(s, eos=True) for s, _ in pairs], src_vocab.pad_id)
    y, y_len = pad([tgt_vocab.encode(t, bos=True, eos=True) for _, t in pairs], tgt_vocab.pad_id)
    return Seq2SeqDataset(x, y, x_len, y_len, src_vocab, tgt_vocab, pairs=list(pairs))


def unknown_tokens(sequences: Iterable[Sequence[str]], vocab: Vocabulary) -> Counter:
    """How often each token of ``sequences`` that ``vocab`` lacks occurs (those encode to ``<unk>``)."""
    return Counter(tok for seq in sequences for tok in seq if tok not in vocab)


def unknown_message(counts: Counter, what: str, show: int = 12) -> str:
    """``"7 source tokens (3 distinct) ... read as <unk>: 'ça' (4), 'été' (2), 'où' (1)"``."""
    listed = ", ".join(f"{tok!r} ({n})" for tok, n in counts.most_common(show))
    more = f", ... and {len(counts) - show:,} more" if len(counts) > show else ""
    return (
        f"{sum(counts.values()):,} {what} ({len(counts):,} distinct) are not in the vocabulary and read as "
        f"<unk>: {listed}{more}"
    )


def seq2seq_info(parts: list[Seq2SeqDataset], sep: str, **extra) -> dict:
    src, tgt = parts[0].src_vocab, parts[0].tgt_vocab
    S = max(p.x.shape[1] for p in parts)
    U = max(p.y.shape[1] for p in parts)
    return {
        "task": Task.SEQ2SEQ,
        "metric": "cross_entropy",
        "src_vocab_size": len(src),
        "tgt_vocab_size": len(tgt),
        "src_vocab": src,
        "tgt_vocab": tgt,
        "pad_id": src.pad_id,
        "bos_id": tgt.bos_id,
        "eos_id": tgt.eos_id,
        "input_shape": (S,),
        "target_shape": (U,),
        "max_src_len": S,
        "max_tgt_len": U,
        "token_separator": sep,
        "layout": LAYOUT,
        **extra,
    }


# --- copy, reverse, sort -------------------------------------------------------------------------

SYMBOLS = "abcdefghijklmnopqrstuvwxyz"
TRANSFORMS = {"copy": lambda s: list(s), "reverse": lambda s: s[::-1], "sort": sorted}


@dataclass(frozen=True)
class SymbolTaskConfig:
    """Map a random string of ``num_symbols`` letters, ``min_len``..``max_len`` long, to its copy/reverse/sort."""

    name: str = "reverse"
    num_symbols: int = 10  # the letters a, b, c, ...
    min_len: int = 1
    max_len: int = 10
    num_train: int = 10000
    num_val: int = 1000
    num_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.name not in TRANSFORMS:
            raise ValueError(f"data.name must be one of {', '.join(TRANSFORMS)}, got {self.name!r}")
        if not 1 <= self.num_symbols <= len(SYMBOLS):
            raise ValueError(f"data.num_symbols must be in 1..{len(SYMBOLS)}, got {self.num_symbols}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(
                f"data.min_len and data.max_len must satisfy 1 <= min_len <= max_len, "
                f"got {self.min_len} and {self.max_len}"
            )
        check_positive(self, "num_train", "num_val", "num_test")


@dataclass(frozen=True)
class CopyConfig(SymbolTaskConfig):
    name: str = "copy"


@dataclass(frozen=True)
class ReverseConfig(SymbolTaskConfig):
    name: str = "reverse"


@dataclass(frozen=True)
class SortConfig(SymbolTaskConfig):
    name: str = "sort"


def symbol_pairs(
    task: str, n: int, num_symbols: int, min_len: int, max_len: int, rng: np.random.Generator
) -> list[tuple[list[str], list[str]]]:
    lengths = rng.integers(min_len, max_len + 1, size=n)
    symbols = np.array(list(SYMBOLS[:num_symbols]))
    out = []
    for L in lengths:
        src = symbols[rng.integers(0, num_symbols, size=L)].tolist()
        out.append((src, list(TRANSFORMS[task](src))))
    return out


def build_symbol_task(cfg: SymbolTaskConfig) -> Splits:
    vocab = Vocabulary(SYMBOLS[: cfg.num_symbols])
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(3)]
    sizes = (cfg.num_train, cfg.num_val, cfg.num_test)
    parts = [
        encode_pairs(symbol_pairs(cfg.name, n, cfg.num_symbols, cfg.min_len, cfg.max_len, rng), vocab, vocab)
        for n, rng in zip(sizes, rngs)
    ]
    return Splits(*parts, seq2seq_info(parts, "", extra_metric="exact_match"))


# --- dates ---------------------------------------------------------------------------------------

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# English names come from these lists, not strftime, so the output does not depend on the locale.
# Every all-numeric format with slashes is month first (US); day first uses dots or dashes with
# a named month, so no string is ambiguous. Two-digit years stand for 1950..2049.
DATE_FORMATS = [
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",  # 21 November 2026
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",  # 11/21/26
    lambda d: f"{DAYS[d.weekday()][:3]}, {MONTHS[d.month - 1][:3]} {d.day} {d.year}",  # Sat, Nov 21 2026
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",  # November 21, 2026
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",  # 21.11.2026
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",  # 2026/11/21
    lambda d: f"{DAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",  # Saturday, 21 November 2026
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",  # 21 Nov 2026
    lambda d: f"{MONTHS[d.month - 1][:3].lower()} {d.day}, {d.year}",  # nov 21, 2026
    lambda d: f"{d.day:02d}-{MONTHS[d.month - 1][:3]}-{d.year}",  # 21-Nov-2026
    lambda d: f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",  # the 21st of November 2026
    lambda d: f"{MONTHS[d.month - 1].upper()} {d.day} {d.year}",  # NOVEMBER 21 2026
    lambda d: f"{DAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",  # Saturday, November 21, 2026
    lambda d: f"{d.month}-{d.day}-{d.year}",  # 11-21-2026
    lambda d: f"{MONTHS[d.month - 1][:3]}. {_ordinal(d.day)}, {d.year}",  # Nov. 21st, 2026
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3].lower()} {d.year % 100:02d}",  # 21 nov 26
    lambda d: f"{d.month}/{d.day}/{d.year}",  # 11/21/2026
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, '{d.year % 100:02d}",  # Nov 21, '26
    lambda d: f"{DAYS[d.weekday()][:3].lower()} {d.day:02d}.{d.month:02d}.{d.year}",  # sat 21.11.2026
    lambda d: f"{d.year}{d.month:02d}{d.day:02d}",  # 20261121
]

DATE_MIN, DATE_MAX = dt.date(1950, 1, 1), dt.date(2049, 12, 31)


def random_dates(n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``n`` (written date, ISO date) pairs, dates uniform in 1950..2049, formats uniform."""
    span = (DATE_MAX - DATE_MIN).days + 1
    offsets = rng.integers(0, span, size=n)
    formats = rng.integers(0, len(DATE_FORMATS), size=n)
    out = []
    for off, f in zip(offsets, formats):
        d = DATE_MIN + dt.timedelta(days=int(off))
        out.append((DATE_FORMATS[f](d), d.isoformat()))
    return out


def date_vocabularies() -> tuple[Vocabulary, Vocabulary]:
    """Characters of every format over a whole (leap) year, so no generated date meets ``<unk>``."""
    year = [dt.date(2000, 1, 1) + dt.timedelta(days=i) for i in range(366)]
    chars = sorted({c for d in year for f in DATE_FORMATS for c in f(d)})
    return Vocabulary(chars), Vocabulary("0123456789-")


@dataclass(frozen=True)
class DatesConfig:
    """Written dates in 20 formats ("21 November 2026", "11/21/26", ...) -> ISO "2026-11-21", char level."""

    name: str = "dates"
    num_train: int = 10000
    num_val: int = 1000
    num_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "num_train", "num_val", "num_test")


def build_dates(cfg: DatesConfig = DatesConfig()) -> Splits:
    src_vocab, tgt_vocab = date_vocabularies()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(3)]
    sizes = (cfg.num_train, cfg.num_val, cfg.num_test)
    parts = [
        encode_pairs([(list(s), list(t)) for s, t in random_dates(n, rng)], src_vocab, tgt_vocab)
        for n, rng in zip(sizes, rngs)
    ]
    return Splits(*parts, seq2seq_info(parts, "", extra_metric="exact_match", num_formats=len(DATE_FORMATS)))

"""Sequence-to-sequence tasks: copy, reverse and sort; date normalisation; sentence-pair files.

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
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..task import Task
from .base import (
    DataError,
    DataWarning,
    Splits,
    TensorSequenceDataset,
    check_fractions,
    check_positive,
    fingerprint,
    read_utf8,
    skipped_message,
    split_counts,
)
from .vocab import BOS, EOS, PAD, UNK, Vocabulary

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


def _seq2seq_info(parts: list[Seq2SeqDataset], sep: str, **extra) -> dict:
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
    return Splits(*parts, _seq2seq_info(parts, "", extra_metric="exact_match"))


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
    return Splits(*parts, _seq2seq_info(parts, "", extra_metric="exact_match", num_formats=len(DATE_FORMATS)))


# --- sentence-pair files -------------------------------------------------------------------------

NORMALIZATIONS = ("NFC", "NFKC", "NFD", "NFKD", "none")
_WORD = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, level: str) -> list[str]:
    """``char``: every character (spaces included); ``word``: runs of letters/digits, and each punctuation mark.

    ``\\w`` is Unicode-aware, so words in any alphabet are kept whole; scripts written without
    spaces (Chinese, Japanese) come out as one token per run, so use ``char`` for those.
    """
    if level == "char":
        return list(text)
    if level == "word":
        return _WORD.findall(text)
    raise ValueError(f"tokenize must be 'char' or 'word', got {level!r}")


def clean(text: str, lowercase: bool, normalize: str) -> str:
    text = " ".join(text.split())  # collapse runs of whitespace, strip the ends
    if normalize != "none":
        text = unicodedata.normalize(normalize, text)
    return text.lower() if lowercase else text


@dataclass(frozen=True)
class PairsReport:
    """What :func:`read_pairs` read: the pairs it kept, and how many lines it skipped and why."""

    pairs: list
    num_lines: int
    skipped: dict  # reason -> count

    def messages(self, path) -> list[str]:
        return [f"{path}: " + skipped_message(n, self.num_lines, reason) for reason, n in self.skipped.items() if n]


def read_pairs(path, *, on_bad_line: str = "skip", swap: bool = False) -> PairsReport:
    """(source, target) strings from a Tatoeba-style file: ``source<TAB>target[<TAB>attribution]`` per line.

    Blank lines are skipped and counted. Lines with fewer than two fields, or an empty source or
    target, are skipped and counted with ``on_bad_line="skip"`` (and a :class:`DataWarning` is
    issued) or raise a DataError naming the file and line with ``on_bad_line="error"``.
    """
    if on_bad_line not in ("skip", "error"):
        raise ValueError(f"on_bad_line must be 'skip' or 'error', got {on_bad_line!r}")
    text = read_utf8(path, "sentence-pair file")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    skipped = {"blank": 0, "fewer than 2 fields": 0, "empty source or target": 0}
    pairs = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            skipped["blank"] += 1
            continue
        fields = line.split("\t")
        reason = None
        if len(fields) < 2:
            reason = "fewer than 2 fields"
        elif not fields[0].strip() or not fields[1].strip():
            reason = "empty source or target"
        if reason is not None:
            if on_bad_line == "error":
                raise DataError(
                    f"{path}:{lineno}: expected source<TAB>target[<TAB>attribution], found "
                    f"{len(fields)} field{'s' if len(fields) != 1 else ''} ({reason}): {line[:60]!r}"
                )
            skipped[reason] += 1
            continue
        src, tgt = fields[0], fields[1]
        pairs.append((tgt, src) if swap else (src, tgt))
    report = PairsReport(pairs, len(lines), skipped)
    bad = {k: v for k, v in skipped.items() if v and k != "blank"}
    if bad:
        warnings.warn(
            "; ".join(f"{path}: " + skipped_message(n, len(lines), reason) for reason, n in bad.items()),
            DataWarning,
            stacklevel=2,
        )
    if not pairs:
        raise DataError(f"{path}: no sentence pairs found in {len(lines):,} lines; expected source<TAB>target lines")
    return report


# The PyTorch seq2seq tutorial's subset ("NLP From Scratch: Translation with a Sequence to Sequence
# Network and Attention"): both sides under 10 words and the English side starting with one of
# these, as its normalised text reads them ("I'm" -> "i m").
TUTORIAL_PREFIXES = (
    "i am ",
    "i m ",
    "he is",
    "he s ",
    "she is",
    "she s ",
    "you are",
    "you re ",
    "we are",
    "we re ",
    "they are",
    "they re ",
)
TUTORIAL_MAX_WORDS = 10


def tutorial_normalize(text: str) -> str:
    """The tutorial's normalizeString: lowercase ASCII letters and ! ?, everything else a space."""
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower().strip()) if unicodedata.category(c) != "Mn")
    text = re.sub(r"([.!?])", r" \1", text)
    return re.sub(r"[^a-zA-Z!?]+", " ", text).strip()


def tutorial_keeps(english: str, other: str) -> bool:
    """True for a pair the tutorial's filterPair keeps (English first, either translation direction)."""
    e, o = tutorial_normalize(english), tutorial_normalize(other)
    return (
        len(e.split(" ")) < TUTORIAL_MAX_WORDS
        and len(o.split(" ")) < TUTORIAL_MAX_WORDS
        and e.startswith(TUTORIAL_PREFIXES)
    )


# Where to get the files that presets name, for the message when one is missing.
SOURCES = {"eng-fra/eng-fra.txt": "https://download.pytorch.org/tutorial/data.zip (data/eng-fra.txt in it)"}


@dataclass(frozen=True)
class PairsConfig:
    """Sentence pairs from a Tatoeba-layout file, tokenised, filtered by length, split deterministically."""

    name: str = "pairs"
    path: str = "../shared/data/eng-fra/eng-fra.txt"
    tokenize: str = "word"  # "word" or "char"
    lowercase: bool = True
    normalize: str = "NFC"  # Unicode normal form: NFC, NFKC, NFD, NFKD or none
    max_len: int = 10  # pairs whose source or target has more tokens are skipped (and counted); 0: no limit
    swap: bool = False  # translate from the second column to the first
    min_freq: int = 1  # rarer tokens of the training split become <unk>
    max_pairs: int = 0  # keep this many pairs after shuffling (0: all), for quick experiments
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    on_bad_line: str = "skip"  # "skip" (count and warn) or "error"
    # Keep only the PyTorch tutorial's pairs (see TUTORIAL_PREFIXES): the file's FIRST column must be English.
    tutorial_filter: bool = False

    def __post_init__(self):
        if self.tokenize not in ("word", "char"):
            raise ValueError(f"data.tokenize must be 'word' or 'char', got {self.tokenize!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"data.normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        if self.on_bad_line not in ("skip", "error"):
            raise ValueError(f"data.on_bad_line must be 'skip' or 'error', got {self.on_bad_line!r}")
        for key in ("max_len", "max_pairs"):
            if getattr(self, key) < 0:
                raise ValueError(f"data.{key} must be >= 0 (0: no limit), got {getattr(self, key)}")
        check_positive(self, "min_freq")
        check_fractions(self.val_fraction, self.test_fraction)


def build_pairs(cfg: PairsConfig = PairsConfig()) -> Splits:
    path = Path(cfg.path).expanduser()
    if not path.exists():
        url = next((u for name, u in SOURCES.items() if path.as_posix().endswith(name)), None)
        get = f"download {url} to that path, or " if url else "check data.path, or "
        raise DataError(
            f"sentence-pair file not found: {cfg.path}; {get}pass --data.path=YOUR_PAIRS.tsv "
            f"(one source<TAB>target[<TAB>attribution] per line, UTF-8)"
        )
    with warnings.catch_warnings():  # the skipped lines are in info["messages"], which the caller shows once
        warnings.simplefilter("ignore", DataWarning)
        report = read_pairs(cfg.path, on_bad_line=cfg.on_bad_line, swap=cfg.swap)
    skipped = dict(report.skipped)
    messages = report.messages(cfg.path)
    pairs = report.pairs
    if cfg.tutorial_filter:
        kept = [(s, t) for s, t in pairs if tutorial_keeps(*((t, s) if cfg.swap else (s, t)))]
        reason = "not in the PyTorch tutorial's subset (data.tutorial_filter)"
        skipped[reason] = len(pairs) - len(kept)
        messages.append(f"{cfg.path}: " + skipped_message(skipped[reason], report.num_lines, reason))
        pairs = kept
    tokenized = [
        (
            tokenize(clean(s, cfg.lowercase, cfg.normalize), cfg.tokenize),
            tokenize(clean(t, cfg.lowercase, cfg.normalize), cfg.tokenize),
        )
        for s, t in pairs
    ]
    if cfg.max_len:
        kept = [p for p in tokenized if len(p[0]) <= cfg.max_len and len(p[1]) <= cfg.max_len]
        reason = f"source or target longer than max_len={cfg.max_len} tokens"
        skipped[reason] = len(tokenized) - len(kept)
        messages.append(f"{cfg.path}: " + skipped_message(skipped[reason], report.num_lines, reason))
        tokenized = kept
    if not tokenized:
        fixes = (
            ['set --data.tutorial_filter=false (it keeps only English-first pairs starting "i am", "he is", ...)']
            if cfg.tutorial_filter
            else []
        ) + (["raise data.max_len"] if cfg.max_len else [])
        raise DataError(f"{cfg.path}: no pairs left after filtering ({'; '.join(messages)}); {' or '.join(fixes)}")
    order = torch.randperm(len(tokenized), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    if cfg.max_pairs and cfg.max_pairs < len(order):
        messages.append(f"kept {cfg.max_pairs:,} of {len(order):,} pairs (data.max_pairs)")
        order = order[: cfg.max_pairs]
    n_train, n_val, n_test = split_counts(len(order), cfg.val_fraction, cfg.test_fraction)
    if n_train < 1:
        raise DataError(f"{cfg.path}: only {len(order)} pairs, too few for a training split")
    idx = [order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]]
    train_pairs = [tokenized[i] for i in idx[0]]
    specials = (PAD, BOS, EOS, UNK)
    src_vocab = Vocabulary.build((s for s, _ in train_pairs), cfg.min_freq, specials)
    tgt_vocab = Vocabulary.build((t for _, t in train_pairs), cfg.min_freq, specials)
    parts = [encode_pairs([tokenized[i] for i in part], src_vocab, tgt_vocab) for part in idx]
    for side, vocab, what in ((0, src_vocab, "source"), (1, tgt_vocab, "target")):
        unknown = unknown_tokens((tokenized[i][side] for part in idx for i in part), vocab)
        if unknown:  # rarer than data.min_freq in training, or seen only in validation and test
            messages.append(f"{cfg.path}: " + unknown_message(unknown, f"{what} tokens"))
    sep = " " if cfg.tokenize == "word" else ""
    info = _seq2seq_info(
        parts,
        sep,
        path=str(cfg.path),
        num_lines=report.num_lines,
        num_pairs=len(order),
        skipped=skipped,
        messages=messages,
        files={"data.path": fingerprint(cfg.path)},
    )
    return Splits(*parts, info)

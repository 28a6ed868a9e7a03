"""Sequence-to-sequence data from sentence-pair files (Tatoeba's layout: source<TAB>target[<TAB>attribution]).

The pairs are cleaned, tokenised (word or character level), filtered, split and encoded into the
:class:`~seqlab.data.seq2seq.Seq2SeqDataset` layout that every seq2seq task here gives.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .base import (
    DataError,
    DataWarning,
    Splits,
    check_fractions,
    check_positive,
    fingerprint,
    read_utf8,
    skipped_message,
    split_counts,
)
from .seq2seq import encode_pairs, seq2seq_info, unknown_message, unknown_tokens
from .vocab import BOS, EOS, PAD, UNK, Vocabulary

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
    info = seq2seq_info(
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

"""Long-range synthetic tasks, generated deterministically from a seed for any length T.

**Adding problem** (Hochreiter & Schmidhuber 1997; the form of Le et al. 2015 / Arjovsky et
al. 2016). Input x of shape (T, 2): channel 0 holds values u_t ~ U(0, 1), channel 1 is a
marker, 1 at exactly two steps (one in the first half, one in the second) and 0 elsewhere.
Target y of shape (1,): the sum of the two marked values. Always predicting the mean, 1, gives
MSE = Var(u_a + u_b) = 2 * 1/12 = 1/6 ~ 0.167: a model must beat that to have learned anything.

**Copy memory** (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016). Symbols:
0 = blank, 1..8 = data, 9 = delimiter. Input of length T + 20: 10 data symbols drawn uniformly
from 1..8, T - 1 blanks, the delimiter, then 10 blanks; target: T + 10 blanks, then the same 10
data symbols. So T steps separate the last symbol from the delimiter that asks for it. A
memoryless model that outputs blanks until the end and then a uniform guess over the 8 symbols
scores cross-entropy 10 ln 8 / (T + 20) per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..task import Task
from .base import Splits, TensorSequenceDataset, check_positive

BLANK, DELIMITER, NUM_DATA_SYMBOLS, NUM_COPY = 0, 9, 8, 10
COPY_VOCAB = 10  # blank, 8 data symbols, delimiter


def _rngs(seed: int) -> list[np.random.Generator]:
    """Independent generators for train, val and test: the test set does not move when num_train does."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def adding_problem(n: int, seq_len: int, rng: np.random.Generator | int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples of length ``seq_len``: x (n, T, 2) float32 [value, marker], y (n, 1) float32."""
    if seq_len < 2:
        raise ValueError(f"the adding problem needs seq_len >= 2 (one marker per half), got {seq_len}")
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    T, half = seq_len, seq_len // 2
    values = rng.random((n, T), dtype=np.float32)  # u_t ~ U(0, 1)
    first = rng.integers(0, half, size=n)  # a marker in [0, T/2)
    second = rng.integers(half, T, size=n)  # and one in [T/2, T)
    markers = np.zeros((n, T), dtype=np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)  # (n, T, 2)
    y = (values[rows, first] + values[rows, second])[:, None]  # (n, 1)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))


def copy_memory(n: int, seq_len: int, rng: np.random.Generator | int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples with ``seq_len`` = T: x (n, T + 20) and y (n, T + 20), int64 symbols in 0..9."""
    if seq_len < 1:
        raise ValueError(f"the copy memory task needs seq_len >= 1, got {seq_len}")
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    T, K = seq_len, NUM_COPY
    data = rng.integers(1, NUM_DATA_SYMBOLS + 1, size=(n, K))  # (n, 10) symbols in 1..8
    x = np.full((n, T + 2 * K), BLANK, dtype=np.int64)
    x[:, :K] = data
    x[:, K + T - 1] = DELIMITER  # after T - 1 blanks
    y = np.full((n, T + 2 * K), BLANK, dtype=np.int64)
    y[:, T + K :] = data  # recalled in the last 10 steps
    return torch.from_numpy(x), torch.from_numpy(y)


def adding_baseline_mse() -> float:
    """MSE of always predicting E[y] = 1: Var(u_a + u_b) = 1/6."""
    return 1 / 6


def copy_memory_baseline_ce(seq_len: int) -> float:
    """Per-step cross-entropy (nats) of the memoryless strategy: 10 ln 8 / (T + 20)."""
    return NUM_COPY * math.log(NUM_DATA_SYMBOLS) / (seq_len + 2 * NUM_COPY)


@dataclass(frozen=True)
class AddingConfig:
    """The adding problem at length ``seq_len``."""

    name: str = "adding"
    seq_len: int = 100
    num_train: int = 10000
    num_val: int = 1000
    num_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "num_train", "num_val", "num_test")
        if self.seq_len < 2:
            raise ValueError(f"data.seq_len must be >= 2 for the adding problem, got {self.seq_len}")


@dataclass(frozen=True)
class CopyMemoryConfig:
    """The copy memory task with ``seq_len`` = T blanks between the symbols and their recall."""

    name: str = "copy_memory"
    seq_len: int = 100
    num_train: int = 10000
    num_val: int = 1000
    num_test: int = 1000
    one_hot: bool = True  # x as (T + 20, 10) one-hot floats; false: (T + 20,) int64 symbols
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "seq_len", "num_train", "num_val", "num_test")


def build_adding(cfg: AddingConfig = AddingConfig()) -> Splits:
    sizes = (cfg.num_train, cfg.num_val, cfg.num_test)
    parts = [TensorSequenceDataset(*adding_problem(n, cfg.seq_len, rng)) for n, rng in zip(sizes, _rngs(cfg.seed))]
    info = {
        "task": Task.REGRESSION,
        "metric": "mse",
        "input_size": 2,
        "seq_len": cfg.seq_len,
        "output_size": 1,
        "input_shape": (cfg.seq_len, 2),
        "target_shape": (1,),
        "baseline": {"mse": adding_baseline_mse(), "strategy": "always predict the mean, 1"},
    }
    return Splits(*parts, info)


def build_copy_memory(cfg: CopyMemoryConfig = CopyMemoryConfig()) -> Splits:
    sizes = (cfg.num_train, cfg.num_val, cfg.num_test)
    L = cfg.seq_len + 2 * NUM_COPY
    parts = []
    for n, rng in zip(sizes, _rngs(cfg.seed)):
        x, y = copy_memory(n, cfg.seq_len, rng)
        if cfg.one_hot:
            x = torch.nn.functional.one_hot(x, COPY_VOCAB).float()  # (n, T + 20, 10)
        parts.append(TensorSequenceDataset(x, y))
    info = {
        "task": Task.SEQUENCE_LABELING,
        "metric": "cross_entropy",
        "seq_len": L,
        "num_classes": COPY_VOCAB,
        "vocab_size": COPY_VOCAB,
        "input_size": COPY_VOCAB if cfg.one_hot else None,
        "input_shape": (L, COPY_VOCAB) if cfg.one_hot else (L,),
        "target_shape": (L,),
        "symbols": {"blank": BLANK, "data": (1, NUM_DATA_SYMBOLS), "delimiter": DELIMITER},
        "baseline": {
            "cross_entropy": copy_memory_baseline_ce(cfg.seq_len),
            "strategy": "blanks, then a uniform guess over the 8 symbols for the last 10 steps",
        },
    }
    return Splits(*parts, info)

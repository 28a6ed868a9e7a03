"""The registry of datasets: each name's config dataclass, builder and one-line description; where its files are."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from .base import Splits
from .digits import DigitsConfig, digits
from .idx import MnistConfig, build_mnist, resolve_root
from .pairs import PairsConfig, build_pairs
from .seq2seq import CopyConfig, DatesConfig, ReverseConfig, SortConfig, build_dates, build_symbol_task
from .series import (
    CO2Config,
    CsvSeriesConfig,
    SineConfig,
    SunspotsConfig,
    build_co2,
    build_series_csv,
    build_sine,
    build_sunspots,
)
from .synthetic import AddingConfig, CopyMemoryConfig, build_adding, build_copy_memory
from .text import CharLMConfig, build_char_lm


class DatasetEntry(NamedTuple):
    config: type
    build: Callable[..., Splits]
    description: str


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(DigitsConfig, digits, "8x8 handwritten digits (embedded), 8 rows of 8 pixels, 10 classes"),
    "mnist": DatasetEntry(
        MnistConfig,
        build_mnist,
        "MNIST-format IDX images (MNIST, Fashion-MNIST, KMNIST via data.root) "
        "as 28 rows, 784 pixels or permuted pixels",
    ),
    "adding": DatasetEntry(
        AddingConfig,
        build_adding,
        "adding problem: sum the two marked values of a length-T sequence (baseline MSE 1/6)",
    ),
    "copy_memory": DatasetEntry(
        CopyMemoryConfig,
        build_copy_memory,
        "copy memory: recall 10 symbols after T steps (baseline CE 10 ln 8 / (T + 20))",
    ),
    "copy": DatasetEntry(CopyConfig, build_symbol_task, "seq2seq: copy a random letter string of variable length"),
    "reverse": DatasetEntry(
        ReverseConfig, build_symbol_task, "seq2seq: reverse a random letter string of variable length"
    ),
    "sort": DatasetEntry(SortConfig, build_symbol_task, "seq2seq: sort a random letter string of variable length"),
    "dates": DatasetEntry(
        DatesConfig, build_dates, "seq2seq: written dates in 20 formats -> ISO 2026-11-21, character level"
    ),
    "pairs": DatasetEntry(
        PairsConfig,
        build_pairs,
        "seq2seq: sentence pairs from a Tatoeba-layout file (source<TAB>target), word or char level",
    ),
    "char_lm": DatasetEntry(
        CharLMConfig,
        build_char_lm,
        "character-level language model over a UTF-8 text (embedded Shakespeare sample by default)",
    ),
    "sunspots": DatasetEntry(
        SunspotsConfig, build_sunspots, "yearly sunspot activity 1700-2008 (embedded), AR(tau) windows"
    ),
    "co2": DatasetEntry(
        CO2Config, build_co2, "weekly Mauna Loa CO2 1958-2001 (embedded, missing weeks interpolated), AR(tau) windows"
    ),
    "sine": DatasetEntry(SineConfig, build_sine, "noisy sine wave sin(0.01 t) + N(0, 0.2^2), AR(tau) windows"),
    "series_csv": DatasetEntry(CsvSeriesConfig, build_series_csv, "one column of any CSV file, AR(tau) windows"),
}


def build_splits(cfg) -> Splits:
    return DATASETS[cfg.name].build(cfg)


LOCATION_KEYS = ("path", "root")  # where a dataset's files are, not what they hold (that is info["files"])


def resolve_locations(cfg):
    """``cfg`` with its file and folder keys as absolute paths, so that a run stored with it can be
    evaluated or resumed from any folder. An MNIST ``root=""`` becomes the folder the search finds."""
    changes = {}
    for key in LOCATION_KEYS:
        value = getattr(cfg, key, None)
        if isinstance(value, str) and value:
            changes[key] = str(Path(value).expanduser().resolve())
    if isinstance(cfg, MnistConfig) and not cfg.root:
        changes["root"] = str(resolve_root("", "train", cfg.download).resolve())
    return dataclasses.replace(cfg, **changes) if changes else cfg

"""Datasets and tasks. Each entry of ``DATASETS`` names a config dataclass and a builder.

A builder takes its config and returns ``Splits(train, val, test, info)``; configs select a
dataset with ``[data] name = "..."``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from .base import Splits, TensorSequenceDataset, stratified_split
from .digits import DigitsConfig, digits, load_digits_arrays


class DatasetEntry(NamedTuple):
    config: type
    build: Callable[..., Splits]
    description: str


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(DigitsConfig, digits, "8x8 handwritten digits (embedded), 8 rows of 8 pixels, 10 classes"),
}


def build_splits(cfg) -> Splits:
    return DATASETS[cfg.name].build(cfg)


__all__ = [
    "DATASETS", "DatasetEntry", "DigitsConfig", "Splits", "TensorSequenceDataset",
    "build_splits", "digits", "load_digits_arrays", "stratified_split",
]

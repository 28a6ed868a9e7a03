"""Datasets and tasks. Each entry of ``DATASETS`` names a config dataclass and a builder.

A builder takes its config and returns ``Splits(train, val, test, info)``; configs select a
dataset with ``[data] name = "..."``. ``info`` states the task (``task``, ``metric``), the shape
of one example's input and target (``input_shape``, ``target_shape``), vocabulary sizes where
there are tokens, baselines where there is a closed form, and what was skipped or filled
(``skipped``, ``filled``, ``messages``). Data code never prints: ``describe`` turns ``info`` into
text for the CLI.
"""

from __future__ import annotations

from .base import DataError, DataWarning, Splits, TensorSequenceDataset, fingerprint, read_utf8, stratified_split
from .describe import describe, list_datasets
from .digits import DigitsConfig, digits, load_digits_arrays
from .idx import MnistConfig, build_mnist, mnist, read_idx, resolve_root
from .pairs import PairsConfig, build_pairs, read_pairs, tokenize
from .registry import DATASETS, LOCATION_KEYS, DatasetEntry, build_splits, resolve_locations
from .seq2seq import (
    CopyConfig,
    DatesConfig,
    ReverseConfig,
    Seq2SeqDataset,
    SortConfig,
    build_dates,
    build_symbol_task,
)
from .series import (
    CO2Config,
    CsvSeriesConfig,
    Scaler,
    SeriesTooShort,
    SineConfig,
    SunspotsConfig,
    ar_windows,
    build_co2,
    build_series_csv,
    build_sine,
    build_sunspots,
)
from .synthetic import AddingConfig, CopyMemoryConfig, adding_problem, build_adding, build_copy_memory, copy_memory
from .text import CharLMConfig, CharLMDataset, StreamChunks, batchify, build_char_lm
from .vocab import Vocabulary

__all__ = [
    "AddingConfig",
    "CO2Config",
    "CharLMConfig",
    "CharLMDataset",
    "CopyConfig",
    "CopyMemoryConfig",
    "CsvSeriesConfig",
    "DATASETS",
    "DataError",
    "DataWarning",
    "DatasetEntry",
    "DatesConfig",
    "DigitsConfig",
    "LOCATION_KEYS",
    "MnistConfig",
    "PairsConfig",
    "ReverseConfig",
    "Scaler",
    "Seq2SeqDataset",
    "SeriesTooShort",
    "SineConfig",
    "SortConfig",
    "Splits",
    "StreamChunks",
    "SunspotsConfig",
    "TensorSequenceDataset",
    "Vocabulary",
    "adding_problem",
    "ar_windows",
    "batchify",
    "build_splits",
    "copy_memory",
    "describe",
    "digits",
    "fingerprint",
    "list_datasets",
    "load_digits_arrays",
    "mnist",
    "read_idx",
    "read_pairs",
    "read_utf8",
    "resolve_locations",
    "stratified_split",
    "tokenize",
]

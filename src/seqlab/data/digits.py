"""The 8x8 handwritten digits bundled with scikit-learn, read row by row: 8 steps of 8 features.

The file ``embedded/digits.csv.gz`` is scikit-learn's copy of the UCI "Optical Recognition of
Handwritten Digits" test set (1,797 images, BSD-3-Clause), shipped inside seqlab so the default
job needs no download and no scikit-learn.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch

from ..task import Task
from .base import Splits, TensorSequenceDataset, check_fractions, embedded_fingerprint, stratified_split

# sha256 of the decompressed CSV, checked on every load.
DIGITS_SHA256 = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"


@dataclass(frozen=True)
class DigitsConfig:
    """Rows of 8x8 digit images; a seeded, stratified test/val/train split."""

    name: str = "digits"
    view: str = "rows"  # "rows": (8 steps, 8 features); "pixels": (64 steps, 1 feature)
    test_fraction: float = 0.2
    val_fraction: float = 0.1  # of all images, taken from the non-test part
    seed: int = 0

    def __post_init__(self):
        if self.view not in ("rows", "pixels"):
            raise ValueError(f"data.view must be 'rows' or 'pixels', got {self.view!r}")
        check_fractions(self.val_fraction, self.test_fraction)
        if self.test_fraction == 0:
            raise ValueError("data.test_fraction must be above 0: the demo reports test accuracy")


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images (1797, 8, 8) as float32 in [0, 1] and labels (1797,) as int64."""
    raw = resources.files("seqlab.data").joinpath("embedded/digits.csv.gz").read_bytes()
    text = gzip.decompress(raw)
    if hashlib.sha256(text).hexdigest() != DIGITS_SHA256:
        raise RuntimeError("seqlab's embedded digits.csv.gz is corrupt (sha256 mismatch): reinstall seqlab")
    table = np.loadtxt(text.decode("ascii").splitlines(), delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, 8, 8) / 16.0  # pixel counts are 0..16
    labels = table[:, -1].astype(np.int64)
    return images, labels


def digits(cfg: DigitsConfig = DigitsConfig()) -> Splits:
    images, labels = load_digits_arrays()
    x = torch.from_numpy(images)  # (N, 8, 8): 8 rows of 8 pixels
    if cfg.view == "pixels":
        x = x.reshape(len(x), 64, 1)  # (N, 64, 1)
    y = torch.from_numpy(labels)
    test_idx, val_idx, train_idx = stratified_split(y, (cfg.test_fraction, cfg.val_fraction), cfg.seed)
    make = lambda idx: TensorSequenceDataset(x[idx], y[idx])  # noqa: E731
    info = {
        "task": Task.CLASSIFICATION,
        "metric": "accuracy",
        "input_size": x.shape[-1],
        "seq_len": x.shape[1],
        "num_classes": 10,
        "input_shape": tuple(x.shape[1:]),
        "target_shape": (),
        "files": {"embedded": embedded_fingerprint("digits.csv.gz", DIGITS_SHA256)},
    }
    return Splits(make(train_idx), make(val_idx), make(test_idx), info)

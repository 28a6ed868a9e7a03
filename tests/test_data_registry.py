"""The dataset registry and the text behind `seqlab data list` / `seqlab data info`."""

import gzip
import math
import warnings

import numpy as np
import pytest

from seqlab.config import from_dict
from seqlab.data import DATASETS, describe, list_datasets

# Small settings per dataset so that every entry is built here; files are written by the test.
SMALL = {
    "digits": {},
    "adding": {"seq_len": 12, "num_train": 20, "num_val": 5, "num_test": 5},
    "copy_memory": {"seq_len": 8, "num_train": 20, "num_val": 5, "num_test": 5},
    "copy": {"num_train": 20, "num_val": 5, "num_test": 5},
    "reverse": {"num_train": 20, "num_val": 5, "num_test": 5},
    "sort": {"num_train": 20, "num_val": 5, "num_test": 5},
    "dates": {"num_train": 20, "num_val": 5, "num_test": 5},
    "char_lm": {"seq_len": 16},
    "sunspots": {},
    "co2": {},
    "sine": {"length": 100},
}


def test_every_dataset_is_listed_with_a_description():
    listed = list_datasets()
    assert [name for name, _ in listed] == list(DATASETS)
    assert {
        "digits",
        "mnist",
        "adding",
        "copy_memory",
        "copy",
        "reverse",
        "sort",
        "dates",
        "pairs",
        "char_lm",
        "sunspots",
        "co2",
        "sine",
        "series_csv",
    } == set(DATASETS)
    assert all(desc and "\n" not in desc for _, desc in listed)
    for name, entry in DATASETS.items():
        assert entry.config().name == name  # the config's default name selects its own entry


@pytest.fixture
def file_values(tmp_path):
    root = tmp_path / "mnist"
    root.mkdir()
    for prefix, n in (("train", 30), ("t10k", 10)):
        images = np.arange(n * 16, dtype=np.uint8).reshape(n, 4, 4)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for stem, magic, arr in (
            (f"{prefix}-images-idx3-ubyte", 2051, images),
            (f"{prefix}-labels-idx1-ubyte", 2049, labels),
        ):
            head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
            (root / f"{stem}.gz").write_bytes(gzip.compress(head + arr.tobytes()))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        "Go.\tVa !\nHi.\tSalut !\nbad line\nRun!\tCours !\nWow!\tÇa alors !\nFire!\tAu feu !\n", encoding="utf-8"
    )
    csv = tmp_path / "s.csv"
    csv.write_text("t,v\n" + "".join(f"{i},{i % 7}\n" for i in range(60)))
    return {
        "mnist": {"root": str(root), "val_fraction": 0.2},
        "pairs": {"path": str(pairs), "val_fraction": 0.2, "test_fraction": 0.2},
        "series_csv": {"path": str(csv), "tau": 3},
    }


def test_describe_every_dataset(file_values):
    for name in DATASETS:
        values = {**SMALL.get(name, {}), **file_values.get(name, {})}
        cfg = from_dict(DATASETS[name].config, values, "data")
        text = describe(cfg)  # a pairs file's skipped lines are in the text (info["messages"]), not a warning
        splits = DATASETS[name].build(cfg) if name != "pairs" else None
        assert text.startswith(f"{name}: {DATASETS[name].description}\n")
        assert "example (train[0]):" in text
        if splits is not None:
            assert f"splits: train {len(splits.train):,}, val {len(splits.val):,}, test {len(splits.test):,}" in text


def test_describe_shows_sizes_vocab_skips_and_a_decoded_example(file_values):
    cfg = from_dict(DATASETS["pairs"].config, file_values["pairs"], "data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once, in the text: no Python warning besides
        text = describe(cfg)
    assert "splits: train 3, val 1, test 1" in text
    assert "one example: x (3,) int64, y (5,) int64" in text  # longest: "wow !" + <eos>, <bos> "ça alors !" <eos>
    assert f"{file_values['pairs']['path']}: skipped 1 of 6 lines: fewer than 2 fields" in text
    assert "src_vocab_size: " in text and "tgt_vocab_size: " in text
    text = describe(from_dict(DATASETS["dates"].config, SMALL["dates"], "data"))
    lines = text.splitlines()
    x_line, y_line = lines[-2].strip(), lines[-1].strip()
    assert x_line.startswith("x: '") and y_line.startswith("y: '") and len(y_line) == len("y: '2026-11-21'")
    assert "src_vocab_size: 64" in text and "tgt_vocab_size: 15" in text
    text = describe(from_dict(DATASETS["copy_memory"].config, SMALL["copy_memory"], "data"))
    assert f"baseline: cross_entropy {10 * math.log(8) / 28:.4g} " in text
    assert "y: _ x18 " in text


def test_describe_draws_an_mnist_digit(file_values):
    text = describe(from_dict(DATASETS["mnist"].config, {**file_values["mnist"], "view": "permuted"}, "data"))
    assert "splits: train 20, val 10, test 10" in text and "one example: x (16, 1) float32, y () int64" in text
    art = text.splitlines()[-5:-1]
    assert len(art) == 4 and all(len(row) == 2 + 4 for row in art)
    rows = describe(from_dict(DATASETS["mnist"].config, {**file_values["mnist"], "view": "rows"}, "data"))
    assert rows.splitlines()[-5:] == text.splitlines()[-5:]  # the permutation is undone for display

"""train.compile: true, false or "auto" (CUDA only: on the CPU compiling the whole model paid for no
model family measured, docs/benchmarks.md)."""

from __future__ import annotations

import pytest
import torch

from seqlab.config import ConfigError, from_dict
from seqlab.train.compile import resolve_compile
from seqlab.train.config import TrainConfig


def test_compile_setting_accepts_true_false_auto_only():
    for value in (True, False, "auto"):
        assert from_dict(TrainConfig, {"compile": value}, "train").compile == value
    with pytest.raises(ConfigError, match="train.compile must be true, false or \"auto\", got 'maybe'"):
        from_dict(TrainConfig, {"compile": "maybe"}, "train")
    with pytest.raises(ConfigError, match="train.compile: expected bool | str, got 1"):
        from_dict(TrainConfig, {"compile": 1}, "train")


def test_auto_compiles_on_cuda_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_compile("auto", cpu) is False and resolve_compile("auto", cuda) is True
    assert resolve_compile(True, cpu) is True and resolve_compile(False, cuda) is False


def test_cli_names_the_key_and_the_choices(capsys, configs_dir):
    from seqlab.cli import main

    assert main(["train", str(configs_dir / "digits_lstm.toml"), "--train.compile=sometimes"]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("train.compile must be true, false or \"auto\", got 'sometimes'")

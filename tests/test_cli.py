"""The demo, shrunk, end to end through the CLI; config and usage errors exit with status 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqlab.cli import main

SHRINK = ["--train.max_steps=12", "--train.eval_every=5", "--train.log_every=2", "--model.hidden_size=16"]


def _only_run(out: Path) -> Path:
    runs = list(out.iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_demo_shrunk_writes_every_file(tmp_path, configs_dir, capsys):
    argv = ["train", str(configs_dir / "digits_lstm.toml"), *SHRINK, "--out", str(tmp_path)]
    assert main(argv) == 0
    run = _only_run(tmp_path)
    assert run.name.startswith("digits-rnn_classifier-")
    for rel in (
        "config.toml",
        "command.txt",
        "metrics.jsonl",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "plots/curves.png",
    ):
        assert (run / rel).is_file(), rel
    summary = json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["test/accuracy"] <= 1.0
    assert summary["test/loss"] > 0 and summary["seconds"] > 0
    assert summary["params"] == 4 * (16 * 8 + 16 * 16 + 2 * 16) + 16 * 10 + 10
    assert summary["steps"] == 12
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "train/loss" in r]
    val_steps = [r["step"] for r in records if "val/loss" in r]
    assert train_steps == [2, 4, 5, 6, 8, 10, 12]  # every log_every steps, and at each evaluation
    assert val_steps == [5, 10, 12]
    assert all(0 <= r["val/accuracy"] <= 1 for r in records if "val/accuracy" in r)
    assert (run / "command.txt").read_text().split() == ["seqlab", *argv]
    assert "max_steps = 12" in (run / "config.toml").read_text()
    assert (run / "plots/curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert ckpt["step"] == 12 and ckpt["model_config"]["hidden_size"] == 16
    out = capsys.readouterr().out
    assert f"run directory: {run}" in out

    # eval rebuilds the model from the checkpoint and reproduces the test metrics exactly.
    assert main(["eval", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test/accuracy"] == pytest.approx(summary["test/accuracy"], abs=1e-6)
    assert evaluated["test/loss"] == pytest.approx(summary["test/loss"], abs=1e-5)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--train.lrr=0.1"], "unknown key 'train.lrr' for TrainConfig; valid keys: batch_size,"),
        (["--train.lr=fast"], "train.lr: expected float, got 'fast' (str)"),
        (["--model.num_layers=2.5"], "model.num_layers: expected int, got 2.5 (float)"),
        (["--bogus"], "unrecognised argument '--bogus'"),
    ],
)
def test_config_errors_exit_2_with_message(tmp_path, configs_dir, capsys, args, message):
    assert main(["train", str(configs_dir / "digits_lstm.toml"), *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir()), "a failed config must not leave a run directory"


def test_missing_files_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err.strip() == f"seqlab train: error: config file not found: {tmp_path / 'nope.toml'}"
    assert main(["eval", str(tmp_path / "norun")]) == 2
    assert capsys.readouterr().err.strip() == f"seqlab eval: error: run directory not found: {tmp_path / 'norun'}"
    assert main(["train", str(tmp_path)]) == 2
    folder = f"seqlab train: error: {tmp_path} is a folder, not a config file; give a .toml file (configs/ has presets)"
    assert capsys.readouterr().err.strip() == folder
    (tmp_path / "config.toml").write_text("")  # a run directory given where its config goes
    assert main(["train", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"{folder}; to go on training the run in it: seqlab train --resume {tmp_path}"
    )


@pytest.mark.slow
def test_console_script_exit_status_and_help(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "seqlab", "train", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"seqlab train: error: config file not found: {tmp_path / 'missing.toml'}"
    ]
    proc = subprocess.run([sys.executable, "-m", "seqlab", "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    for command in ("train", "eval", "data", "bench"):
        assert command in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "seqlab", "train", "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "--section.key=value" in proc.stdout and "--out" in proc.stdout


def test_data_list_and_info_through_the_cli(capsys):
    from seqlab.data import DATASETS

    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(DATASETS)
    assert main(["data", "info", "adding", "--data.seq_len=10", "--data.num_train=5"]) == 0
    out = capsys.readouterr().out
    assert "splits: train 5, val 1,000, test 1,000" in out and "one example: x (10, 2) float32" in out
    assert main(["data", "info", "nope"]) == 2
    assert "unknown dataset 'nope'; valid names: adding," in capsys.readouterr().err
    assert main(["data", "info", "adding", "--data.sq=1"]) == 2
    assert "unknown key 'data.sq' for AddingConfig" in capsys.readouterr().err
    assert main(["data", "info", "adding", "--train.lr=1"]) == 2
    assert "unrecognised argument '--train.lr=1'" in capsys.readouterr().err

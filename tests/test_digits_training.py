"""A short, full training run on the embedded digits must actually learn."""

import json

from seqlab.cli import main


def test_short_run_reaches_090(tmp_path, configs_dir, capsys):
    args = [
        "train",
        str(configs_dir / "digits_lstm.toml"),
        "--train.epochs=8",
        "--model.hidden_size=64",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert main(args) == 0
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test/accuracy"] >= 0.90, summary

"""SEQLAB_DEBUG=1 shows the traceback behind a CLI's one-line failure; without it, one line only."""

from __future__ import annotations

from seqlab.cli import main


def test_debug_env_shows_traceback_behind_one_line_error(tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / "nope.toml")
    monkeypatch.delenv("SEQLAB_DEBUG", raising=False)
    assert main(["train", missing]) == 2
    quiet = capsys.readouterr().err
    assert "Traceback" not in quiet and quiet.count("\n") == 1 and "nope.toml" in quiet

    monkeypatch.setenv("SEQLAB_DEBUG", "1")
    assert main(["train", missing]) == 2
    loud = capsys.readouterr().err
    assert "Traceback (most recent call last)" in loud and "ConfigError" in loud
    assert loud.rstrip().endswith(quiet.rstrip())  # the same one line closes the traceback

    monkeypatch.setenv("SEQLAB_DEBUG", "0")
    assert main(["train", missing]) == 2
    assert "Traceback" not in capsys.readouterr().err

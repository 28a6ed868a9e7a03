"""docs/make_results.py: which parts are stale, what a finished part records, how the page shows a part."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "make_results.py"


@pytest.fixture
def mr(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_results", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "OUT", tmp_path / "runs" / "results")
    monkeypatch.setattr(module, "FIGURES", tmp_path / "docs" / "results")
    monkeypatch.setattr(module, "PRESETS", tmp_path / "docs" / "results" / "presets.md")
    return module


def part(mr, commands, render=lambda d: "body read from " + d.name):
    return mr.Part("demo", "A title", "A claim.", commands, ["configs/demo.toml"], render, 1.0, "1")


def test_a_part_is_stale_until_run_then_when_its_inputs_or_commands_change(mr, tmp_path):
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "demo.toml"
    config.write_text("[model]\n")
    p = part(mr, ["seqlab --version"])
    assert p.stale() == "not run yet"
    name, seconds, error = mr.run_part(p)
    assert (name, error) == ("demo", None) and seconds > 0
    done = json.loads((p.dir / "done.json").read_text())
    assert done["commands"] == ["seqlab --version"]
    assert done["cpu"].endswith(")") and "(" in done["cpu"]  # the model name and torch's vector capability
    assert (p.dir / "logs" / "0.out").read_text().startswith("seqlab ")  # the command's own output is kept
    assert p.stale() is None
    later = (p.dir / "done.json").stat().st_mtime + 10
    os.utime(config, (later, later))
    assert p.stale() is None  # touched, same content
    config.write_text("# a comment\n[model]\n")
    os.utime(config, (later, later))
    assert p.stale() is None  # the same values
    config.write_text("[model]\nhidden_size = 3\n")
    os.utime(config, (later, later))
    assert p.stale() == "configs/demo.toml changed"
    assert part(mr, ["seqlab --help"]).stale() == "its commands changed"


def test_a_failing_command_leaves_the_part_unfinished_and_names_the_command(mr):
    p = part(mr, ["seqlab train no/such/config.toml"])
    name, _, error = mr.run_part(p)
    assert error.startswith("`seqlab train no/such/config.toml` exited ")
    assert not (p.dir / "done.json").exists() and p.stale() == "not run yet"


def test_the_page_quotes_the_commands_and_shows_finished_parts_only(mr, tmp_path):
    finished, waiting = part(mr, ["seqlab --version"]), part(mr, ["seqlab --help"])
    waiting.name, waiting.section = "other", "2"
    mr.run_part(finished)
    text = mr.render_page([finished, waiting])
    assert "## 1. A title" in text and "```\nseqlab --version\n```" in text
    assert "body read from demo" in text and "_Measured " in text
    assert f" on {mr.cpu()}; the commands took " in text  # which CPU measured it
    assert "## 2. A title" in text and "Not measured yet: `make results` runs it." in text


def test_unknown_parts_are_refused_with_the_list(mr, capsys):
    with pytest.raises(SystemExit):
        mr.main(["--only", "nosuch"])
    assert "unknown part(s) nosuch; the parts are adding," in capsys.readouterr().err


def test_the_table_helper_writes_a_parsable_table(mr):
    from test_results_page import table_problems

    text = mr.table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert text.splitlines()[1] == "|---|---:|" and table_problems(text) == []


def test_a_part_without_runs_keeps_its_measured_section_from_the_page(mr, tmp_path):
    kept, changed, never = part(mr, ["seqlab --version"]), part(mr, ["seqlab --help"]), part(mr, ["seqlab runs"])
    changed.name, changed.section, never.name, never.section = "changed", "2", "never", "3"
    earlier = (
        "## 1. A title\n\nA claim.\n\n```\nseqlab --version\n```\n\n| a |\n|---|\n| 1 |\n\n_Measured 2026-12-01._\n\n"
        "## 2. A title\n\nA claim.\n\n```\nseqlab --help --old-flag\n```\n\nold numbers\n\n"
        "## 3. A title\n\nA claim.\n\n```\nseqlab runs\n```\n\nNot measured yet: `make results` runs it.\n"
    )
    text = mr.render_page([kept, changed, never], earlier)
    assert "| a |\n|---|\n| 1 |\n\n_Measured 2026-12-01._\n\n## 2." in text  # same commands: kept as it was
    assert "old numbers" not in text  # other commands measured something else: not shown under the new ones
    assert text.count("Not measured yet") == 2


def test_who_leads_names_the_lower_loss_at_each_mark_and_a_finished_run(mr):
    text = mr.who_leads({"GPT": ({5: 1.8, 10: 1.6, 15: 1.56}, 12.2), "LSTM": ({5: 1.9, 10: 1.7, 15: 1.5}, 17.9)})
    assert text == (
        "Lower validation loss by 5 min, the GPT (1.800 vs 1.900); by 10 min, the GPT (1.600 vs 1.700); "
        "by 15 min, the LSTM (1.500 vs 1.560; the GPT had finished at 12.2 min)."
    )
    assert mr.who_leads({"A": ({5: None}, 1.0), "B": ({5: 2.0}, 9.0)}) == ""


def test_long_parts_run_only_with_long_and_say_so_on_the_page(mr):
    long_parts = [p.name for p in mr.PARTS if p.long]
    # pixel MNIST for hours, and the GPT preset's 20 minutes on both cores: not in `make results`' 90 minutes
    assert long_parts == ["mnist_long", "gpt_budget"]
    assert [p.threads for p in mr.PARTS if p.threads != 1] == [2] and mr.PARTS[-1].name == "gpt_budget"
    waiting = part(mr, ["seqlab runs"])
    waiting.long = True
    assert "Not measured yet: `make results-long` runs it." in mr.render_page([waiting])
    long_part = next(p for p in mr.PARTS if p.name == "mnist_long")
    assert len(long_part.commands) == 4 and all("--model.init=chrono" in c for c in long_part.commands)


def test_a_part_runs_its_commands_on_its_number_of_threads(mr):
    """OMP_NUM_THREADS is the part's ``threads`` (the shell expands it into the failing command's error)."""
    for threads in (1, 2):
        p = part(mr, ["seqlab runs --threads-were-$OMP_NUM_THREADS"])
        p.threads = threads
        _, _, error = mr.run_part(p)
        assert f"--threads-were-{threads}" in error

"""The lecture notebooks (notebooks/NN_name.ipynb): paired with their jupytext sources, stored clean,
and each run top to bottom in a fresh kernel on this Python, with worktree code and embedded data."""

import importlib.util
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
_spec = importlib.util.spec_from_file_location("notebook_execute", NOTEBOOKS / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)

EXPECTED = [
    "01_sequence_data",
    "02_rnn_bptt",
    "03_lstm_gru_lab",
    "04_attention",
    "05_transformer",
    "06_gpt_generation",
    "07_vit",
]
# The tests run every notebook on the data inside seqlab, as a clean clone without ../shared would.
# Those that look for the full data in ../shared first, and say so when they fall back.
FALL_BACK = {"03_lstm_gru_lab", "06_gpt_generation"}
EMBEDDED = {"SEQLAB_NOTEBOOK_DATA": "embedded", "SEQLAB_NOTEBOOK_SCALE": "1"}


def test_the_lecture_path_in_order():
    assert [p.stem for p in execute.notebooks()] == EXPECTED
    assert sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_equals_its_jupytext_source(name):
    """notebooks/NN.py (percent format) is the reviewed source; the .ipynb must hold the same cells."""
    source = jupytext.read(NOTEBOOKS / f"{name}.py")
    stored = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    want = [(c.cell_type, c.source) for c in source.cells]
    got = [(c.cell_type, c.source) for c in stored.cells]
    assert got == want, f"{name}.ipynb differs from {name}.py: run `jupytext --sync notebooks/{name}.py`"


@pytest.mark.parametrize("name", EXPECTED)
def test_stored_notebook_holds_no_outputs(name):
    assert execute.stored_problems(NOTEBOOKS / f"{name}.ipynb") == []


@pytest.mark.parametrize("name", EXPECTED)
def test_ends_with_the_full_scale_command(name):
    """The last cell shows the seqlab command that does the same at full scale; its presets exist."""
    last = jupytext.read(NOTEBOOKS / f"{name}.py").cells[-1]
    assert last.cell_type == "markdown" and "## At full scale" in last.source
    commands = [line.lstrip("# ").split() for line in last.source.splitlines() if line.startswith("seqlab ")]
    assert commands, f"{name}: no seqlab command in its last cell"
    for words in commands:
        assert words[1] in {"train", "eval", "plot", "forecast", "compare", "generate", "bench"}, words
        for word, after in zip(words, words[1:] + [""]):
            if word.startswith("configs/"):
                assert (ROOT / word).is_file(), f"{name} names {word}, which does not exist"
            if word == "--what":  # seqlab plot's choices
                assert after in {"curves", "gradflow", "gates", "attention", "posenc", "all"}, words


def test_a_notebook_with_outputs_is_reported(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, tmp_path / "dirty.ipynb")
    assert execute.stored_problems(tmp_path / "dirty.ipynb") == [
        "dirty.ipynb: code cell 1 holds 1 output(s)",
        "dirty.ipynb: code cell 1 has execution count 1",
    ]


@pytest.mark.slow
def test_a_broken_notebook_names_the_cell_and_its_error(tmp_path):
    """The failure shows the failing cell's source and the error, not the notebook's JSON; the
    kernel is this Python and imports seqlab from this checkout."""
    cells = [
        "import sys, seqlab\nprint(sys.executable)\nprint(seqlab.__file__)",
        "x = 1\nraise ValueError(f'deliberately broken: x = {x}')",
        "print('never reached')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(nb, tmp_path / "broken.ipynb")
    with pytest.raises(execute.NotebookFailed) as info:
        execute.execute(tmp_path / "broken.ipynb", timeout=120)
    message = str(info.value)
    assert message.startswith("broken.ipynb, code cell 2 of 3 failed:\nx = 1\nraise ValueError(")
    assert message.endswith("ValueError: deliberately broken: x = 1")
    assert '"cell_type"' not in message and "\x1b[" not in message  # no JSON, no terminal colours

    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cells[0])])
    nbformat.write(good, tmp_path / "good.ipynb")
    executable, seqlab_file = execute.execute(tmp_path / "good.ipynb", timeout=120).cells[0].outputs[0].text.split()
    assert Path(executable) == Path(sys.executable)
    assert Path(seqlab_file).is_relative_to(ROOT / "src")


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_top_to_bottom(name):
    nb = execute.execute(NOTEBOOKS / f"{name}.ipynb", env=EMBEDDED, timeout=300)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)  # every cell ran
    assert sum("assert " in c.source for c in code) >= 3  # each idea checked, so a library change fails loudly
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2
    notes = [o.text for c in code for o in c.outputs if o.output_type == "stream" and o.text.startswith("Note:")]
    assert len(notes) == (name in FALL_BACK)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "At full scale" in last.source and "seqlab " in last.source

"""Execute the lecture notebooks top to bottom in fresh kernels; write readable HTML copies.

    python notebooks/execute.py                   # every notebook -> notebooks/executed/NN_name.{html,ipynb}
    python notebooks/execute.py 03_lstm_gru_lab   # one (or several), by name with or without .ipynb

The kernel is this Python (``sys.executable``) with this process's environment plus ``PYTHONPATH``
reaching the checkout's ``src/``, so an edited seqlab is what the notebooks import. A failing
notebook raises ``NotebookFailed`` whose message is the failing cell's source and its error, not
the notebook's JSON. ``SEQLAB_NOTEBOOK_SCALE`` (default 1) multiplies the notebooks' training
budgets; ``SEQLAB_NOTEBOOK_DATA=embedded`` makes them ignore ``shared/data`` (what the tests do).
Used by ``make notebooks`` and ``tests/test_notebooks.py``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookFailed(Exception):
    """A notebook cell raised; the message names the notebook and cell and shows its source and error."""


def notebooks(folder: Path = HERE) -> list[Path]:
    """The lecture notebooks in order: NN_name.ipynb."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def stored_problems(path: str | Path) -> list[str]:
    """What a committed notebook must not hold: outputs or execution counts (diffs stay readable)."""
    nb = nbformat.read(Path(path), as_version=4)
    problems = []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        if cell.get("outputs"):
            problems.append(f"{Path(path).name}: code cell {i + 1} holds {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"{Path(path).name}: code cell {i + 1} has execution count {cell.execution_count}")
    return problems


def kernel_env(extra: dict | None = None) -> dict:
    """This process's environment, PYTHONPATH first reaching src/, inline figures, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures into the notebook, even where CI sets Agg
    env.update(extra or {})
    return env


def failure_message(path: Path, nb, error: CellExecutionError) -> str:
    """The failing cell (its number among code cells, and its source) and the error's last lines."""
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    failed = next((c for c in code_cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
    if failed is None:  # a timeout or a dead kernel: no error output, nbclient's own message
        return f"{path.name}: {ANSI.sub('', str(error)).strip()[-2000:]}"
    out = next(o for o in failed.outputs if o.output_type == "error")
    trace = [
        line for line in ANSI.sub("", "\n".join(out.get("traceback", []))).strip().splitlines() if set(line) != {"-"}
    ]
    last = f"{out.ename}: {out.evalue}".rstrip()
    if not trace or trace[-1].rstrip() != last:
        trace.append(last)
    return (
        f"{path.name}, code cell {code_cells.index(failed) + 1} of {len(code_cells)} failed:\n{failed.source}\n---\n"
        + ("\n".join(trace[-12:]))
    )


def execute(path: str | Path, *, env: dict | None = None, timeout: int = 600):
    """Run ``path`` top to bottom in a fresh kernel (working directory: its folder); return the executed notebook."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute(env=kernel_env(env))
    except CellExecutionError as e:
        failure = NotebookFailed(failure_message(path, nb, e))
        failure.notebook = nb  # executed up to the failing cell, its error included
        raise failure from None
    return nb


def to_html(nb, out_path: Path) -> Path:
    """A standalone HTML copy with the images inline (nbconvert's lab template)."""
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter(template_name="lab", embed_images=True).from_notebook_node(nb)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out_path)
    return out_path


def main(argv: list[str]) -> int:
    wanted = [a.removesuffix(".ipynb") for a in argv]
    paths = [p for p in notebooks() if not wanted or p.stem in wanted]
    unknown = sorted(set(wanted) - {p.stem for p in paths})
    if unknown:
        print(f"execute.py: error: no notebook named {', '.join(unknown)}; have {[p.stem for p in notebooks()]}")
        return 2
    failed = 0
    for path in paths:
        start = time.perf_counter()
        try:
            nb = execute(path)
        except NotebookFailed as e:
            print(f"FAILED {e}\n", flush=True)
            failed += 1
            nb = e.notebook
        out = to_html(nb, HERE / "executed" / f"{path.stem}.html")
        nbformat.write(nb, HERE / "executed" / path.name)  # the executed notebook itself, outputs and all
        print(f"{path.name}: {time.perf_counter() - start:.0f} s -> {out.relative_to(HERE.parent)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

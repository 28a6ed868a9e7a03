"""Imports point one way: nn <- models <- generate <- train <- runs <- experiments, export <- diagnostics <- bench
<- cli
(STYLE.md 3).

``data`` sits beside ``models``: neither imports the other. ``config``, ``utils``, ``task`` and
``torch_internals`` are the floor that every layer may use. The test reads every module's imports (top-level
and inside functions) with ``ast``, so an upward import hidden in a function body fails it too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "seqlab"

# Lower rank = lower layer. A module may import its own layer or any layer of a lower rank,
# except that layers of the same rank (data and models) may not import each other.
RANK = {
    "config": 0,
    "utils": 0,
    "task": 0,
    "torch_internals": 0,  # every private torch call (STYLE.md 2): the floor, imported by nn, train and bench
    "nn": 1,
    "data": 2,
    "models": 2,
    "generate": 3,
    "train": 4,
    "runs": 5,
    "experiments": 6,
    "export": 6,  # a run's model written for other tools: above runs, beside experiments
    "diagnostics": 7,
    "bench": 8,
    "cli": 9,
    "__main__": 10,
    "__init__": 10,
}


def _layer(module: str) -> str:
    """'seqlab.nn.attention' -> 'nn'; 'seqlab' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every seqlab import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "seqlab"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "seqlab":
                continue
            if target == "seqlab" or (node.level and not node.module):  # `from . import x`, `from .. import x`
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        own = _layer(_module_name(path))
        for line, target in _imports(path):
            other = _layer(target)
            if other == own:
                continue
            if other not in RANK or own not in RANK:
                bad.append(
                    f"{path.relative_to(SRC.parent)}:{line} imports {target}: layer {other!r} or "
                    f"{own!r} has no rank in tests/test_layering.py; give it one"
                )
            elif RANK[other] >= RANK[own]:
                bad.append(
                    f"{path.relative_to(SRC.parent)}:{line}: {own} imports {target} ({other} is not below {own})"
                )
    return bad


def test_imports_point_down_the_layers():
    bad = _violations()
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ..train.trainer import Trainer\n", "seqlab.train.trainer"),
        ("from .. import data\n", "seqlab.data"),
        ("import seqlab.cli\n", "seqlab.cli"),
        ("from ..runs.store import load_run\n", "seqlab.runs"),
        ("def f():\n    from ..diagnostics import curves\n", "seqlab.diagnostics"),
    ],
)
def test_the_checker_sees_relative_absolute_and_nested_imports(tmp_path, monkeypatch, source, expected):
    # A file placed as seqlab/nn/x.py: each of these imports must be resolved and reported upward.
    fake_src = tmp_path / "seqlab"
    (fake_src / "nn").mkdir(parents=True)
    path = fake_src / "nn" / "x.py"
    path.write_text(source)
    monkeypatch.setattr(__import__(__name__), "SRC", fake_src)
    targets = [t for _, t in _imports(path)]
    assert any(t.startswith(expected) for t in targets), targets
    assert _violations(), "an nn module importing a higher layer must be reported"

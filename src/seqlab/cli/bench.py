"""``seqlab bench NAME``: runs the benchmark ``seqlab.bench.NAME`` with its own options."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from ..config import ConfigError
from .common import command

HELP = "run a benchmark (recurrent, attention, ...)"
DESCRIPTION = "seqlab bench NAME [args]: runs seqlab.bench.NAME; NAME --help lists its options."


def add_parser(sub) -> argparse.ArgumentParser:
    epilog = "benchmarks:\n" + "\n".join(f"  {name:<18} {about}" for name, about in benchmarks())
    p = command(sub, "bench", HELP, DESCRIPTION, epilog)
    p.add_argument("name")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")
    return p


def benchmarks() -> list[tuple[str, str]]:
    """(name, first docstring line) of each benchmark in seqlab.bench: a module with a ``main``, read
    without importing it (no torch). Helpers the benchmarks share (timing) are not listed."""
    import ast
    import pkgutil

    import seqlab.bench as bench_pkg

    out = []
    for m in sorted(pkgutil.iter_modules(bench_pkg.__path__), key=lambda m: m.name):
        source = Path(bench_pkg.__path__[0], f"{m.name}.py")
        if not source.is_file():
            continue
        tree = ast.parse(source.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            doc = ast.get_docstring(tree)
            out.append((m.name, doc.strip().splitlines()[0] if doc else ""))
    return out


def run(args, extra: list[str], argv: list[str]) -> int:
    names = [name for name, _ in benchmarks()]
    if args.name not in names:
        raise ConfigError(f"unknown benchmark {args.name!r}; available: {', '.join(names) or 'none'}")
    module = importlib.import_module(f"seqlab.bench.{args.name}")
    return int(module.main([*args.args, *extra]) or 0)

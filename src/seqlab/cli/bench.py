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
    """(name, first docstring line) of each module in seqlab.bench, read without importing it (no torch)."""
    import ast
    import pkgutil

    import seqlab.bench as bench_pkg

    out = []
    for m in sorted(pkgutil.iter_modules(bench_pkg.__path__), key=lambda m: m.name):
        source = Path(bench_pkg.__path__[0], f"{m.name}.py")
        doc = ast.get_docstring(ast.parse(source.read_text())) if source.is_file() else None
        out.append((m.name, (doc or "").strip().splitlines()[0] if doc else ""))
    return out


def run(args, extra: list[str], argv: list[str]) -> int:
    try:
        module = importlib.import_module(f"seqlab.bench.{args.name}")
    except ModuleNotFoundError:
        import pkgutil

        import seqlab.bench as bench_pkg

        names = sorted(m.name for m in pkgutil.iter_modules(bench_pkg.__path__))
        raise ConfigError(f"unknown benchmark {args.name!r}; available: {', '.join(names) or 'none'}") from None
    return int(module.main([*args.args, *extra]) or 0)

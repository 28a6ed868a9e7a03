"""The ``seqlab`` command: one module per command, each building its own parser and doing its work.

A command module has ``add_parser(sub)`` (its argparse subparser: arguments, help, examples) and
``run(args, extra, argv) -> int`` (``extra``: the ``--section.key=value`` overrides argparse left).
Adding a command is a module here and a line in ``COMMANDS``. Work is imported inside ``run``, so
that ``seqlab --help`` answers without importing torch.

Exit status: 0 on success, 2 for a usage or config error (one line on stderr, no traceback),
1 for a failure during the work itself. SEQLAB_DEBUG=1 prints the traceback behind the one line.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from ..config import ConfigError
from . import bench, compare, data, evaluate, export, forecast, generate, plot, report, runs, train
from .common import guarded_output

# Command name -> its module, in the order ``seqlab --help`` lists them.
COMMANDS = {
    "train": train,
    "runs": runs,
    "eval": evaluate,
    "generate": generate,
    "forecast": forecast,
    "data": data,
    "plot": plot,
    "report": report,
    "compare": compare,
    "bench": bench,
    "export": export,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqlab", description="Sequence models on PyTorch: train, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"seqlab {__import__('seqlab').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command line; returns the exit status. Output to a reader that went away is dropped."""
    with guarded_output():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exit_:  # --help, --version, or argparse's own usage error (status 2)
        return int(exit_.code or 0)
    try:
        return COMMANDS[args.command].run(args, extra, argv)
    except ConfigError as err:
        _show_traceback()
        print(f"seqlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _show_traceback()
        print(f"seqlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:  # Python's own allocation failed (e.g. under ulimit -v): one line, not a traceback
        _show_traceback()
        print(f"seqlab {args.command}: failed: out of memory; ask for less (a smaller batch or beam)", file=sys.stderr)
        return 1
    except (RuntimeError, FloatingPointError, OSError, ValueError) as err:
        _show_traceback()
        print(f"seqlab {args.command}: failed: {err}", file=sys.stderr)
        return 1


def _show_traceback() -> None:
    """SEQLAB_DEBUG=1: print the traceback behind a one-line failure (call inside an except block)."""
    if os.environ.get("SEQLAB_DEBUG", "") not in ("", "0"):
        traceback.print_exc(file=sys.stderr)

"""``seqlab runs``: a table of the run directories in a folder."""

from __future__ import annotations

import argparse

from .common import overrides, warn_as


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "runs",
        help="a table of the runs in a folder",
        description="One line per run directory in DIR: name, task, model, params, steps, best metric, time.",
    )
    p.add_argument("dir", nargs="?", default="runs")
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from ..runs import runs_table

    overrides(extra, ())
    print(runs_table(args.dir, warn=warn_as("runs")))
    return 0

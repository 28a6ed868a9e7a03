"""``seqlab runs``: a table of the run directories in a folder."""

from __future__ import annotations

import argparse

from .common import command, overrides, warn_as

HELP = "a table of the runs in a folder"
DESCRIPTION = "One line per run directory in DIR: name, task, model, params, steps, best metric, time."


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "runs", HELP, DESCRIPTION)
    p.add_argument("dir", nargs="?", default="runs")
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from ..runs import runs_table

    overrides(extra, ())
    print(runs_table(args.dir, warn=warn_as("runs")))
    return 0

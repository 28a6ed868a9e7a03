"""``seqlab compare``: model families trained on one task and budget over several seeds, tabulated."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .common import command, overrides

HELP = "train rnn, lstm, gru, transformer on one task and budget, tabulate"
DESCRIPTION = """\
Train each model family on CONFIG's task, data and step budget, over several seeds, into ordinary
run directories OUT/runs/<family>-seed<s>-<time>/; write OUT/compare.md (a markdown table),
OUT/compare.json and OUT/curves.png (their validation curves). Run it again to continue an
interrupted compare."""
EPILOG = "overrides: --section.key=value change CONFIG for every family, e.g. --data.seq_len=200"


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "compare", HELP, DESCRIPTION, EPILOG)
    p.add_argument(
        "config",
        help="preset TOML file; its [model] serves every family it fits (cell replaced), but only the first "
        "family in --models keeps its width: the others are resized to match that one (--match)",
    )
    p.add_argument(
        "--models",
        default="rnn,lstm,gru,transformer",
        help="comma-separated families from rnn, lstm, gru, transformer (default: all four)",
    )
    p.add_argument(
        "--budget-steps",
        type=int,
        default=None,
        metavar="N",
        help="optimiser steps per run (default: the config's train.max_steps or epochs)",
    )
    p.add_argument("--seeds", type=int, default=3, help="runs per family, train.seed + 0, 1, ... (default: 3)")
    p.add_argument(
        "--match",
        default="params",
        choices=["params", "hidden"],
        help="params: widths chosen so parameter counts are near the first family's (default); "
        "hidden: every family at the first family's hidden size / d_model",
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/compare-<config name>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from ..diagnostics.curves import plot_validation_curves
    from ..experiments.compare import parse_families, plan_compare, plan_lines, run_compare
    from ..experiments.compare_table import markdown_table, write_compare
    from ..train.config import load_experiment
    from ..train.stops import NonFiniteLoss, TrainingInterrupted

    exp = load_experiment(args.config, overrides(extra, ("model", "data", "train")))
    plan = plan_compare(
        exp, parse_families(args.models), seeds=args.seeds, match=args.match, budget_steps=args.budget_steps
    )
    out = Path(args.out) if args.out is not None else Path("runs") / f"compare-{Path(args.config).stem}"
    print(f"{plan.budget()}, {len(plan.seeds)} seed{'s' if len(plan.seeds) != 1 else ''}, into {out}")
    for line in plan_lines(plan):
        print(line, flush=True)
    try:
        result = run_compare(
            plan, out, argv=argv, progress=not args.quiet, log=lambda text: print(text, file=sys.stderr, flush=True)
        )
    except TrainingInterrupted as stop:
        print(
            f"seqlab compare: interrupted by {signal.Signals(stop.signum).name} at step {stop.step}; finished runs "
            f"are kept and this one resumes from its checkpoint: run the same command again",
            file=sys.stderr,
        )
        return 128 + stop.signum
    except NonFiniteLoss as err:
        print(f"seqlab compare: failed: {err}", file=sys.stderr)
        return 1
    paths = write_compare(result, out)
    seeds = f", mean of {len(plan.seeds)} seeds" if len(plan.seeds) > 1 else ""
    png = plot_validation_curves(
        {f"{f.member.family} ({f.member.params:,} params{seeds})": f.runs for f in result.families}, out / "curves.png"
    )
    print()
    print(markdown_table(result))
    print(f"{paths['table']}\n{paths['json']}\n{png}")
    return 0

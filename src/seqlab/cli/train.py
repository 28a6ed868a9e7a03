"""``seqlab train``: a preset config into a new run directory, or a run continued with ``--resume``."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from ..config import ConfigError
from .common import command, overrides

HELP = "train a preset config into a new run directory"
DESCRIPTION = "Train CONFIG (a TOML preset) into OUT/<name>-<timestamp>/."
EPILOG = """\
overrides: any config key as --section.key=value, e.g.
  seqlab train configs/digits_lstm.toml --train.max_steps=50 --model.hidden_size=64
values are read as TOML (3, 1e-3, true, "text"); bare words are strings.
"""


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "train", HELP, DESCRIPTION, EPILOG)
    p.add_argument(
        "config",
        nargs="?",
        help="preset TOML file, e.g. configs/digits_lstm.toml (optional with --resume: the run's own config is used)",
    )
    p.add_argument("--out", default="runs", help="parent folder of the run directory (default: runs)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue RUN_DIR from its checkpoints/last.pt, exactly where it stopped",
    )
    p.add_argument("--name", default=None, help="run name (default: <data>-<model>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from ..diagnostics.curves import plot_curves
    from ..runs import train_experiment
    from ..train.config import load_experiment
    from ..train.stops import NonFiniteLoss, TrainingInterrupted

    given = overrides(extra, ("model", "data", "train"))
    if args.config is None and args.resume is None:
        raise ConfigError("give a CONFIG file to train, or --resume RUN_DIR to continue a run")
    exp = load_experiment(args.config, given) if args.config else None
    try:
        run_dir = train_experiment(
            exp,
            out=args.out,
            run_name=args.name,
            argv=argv,
            progress=not args.quiet,
            resume=args.resume,
            overrides=given,
        )
    except (TrainingInterrupted, NonFiniteLoss) as stop:
        if not stop.is_main:
            # Under torchrun every process stops at the same step; rank 0 says why and gives the exit
            # status. A failing status here could make torchrun end rank 0 before it has said it.
            return 0
        if isinstance(stop, NonFiniteLoss):
            print(f"seqlab train: failed: {stop}", file=sys.stderr)
            return 1
        where = (
            f"checkpoint saved at step {stop.step}: {stop.checkpoint}" if stop.checkpoint else "no checkpoint written"
        )
        run = stop.checkpoint.parent.parent if stop.checkpoint else "RUN_DIR"
        print(
            f"seqlab train: interrupted by {signal.Signals(stop.signum).name}; {where}\n"
            f"resume with: seqlab train --resume {run}",
            file=sys.stderr,
        )
        return 128 + stop.signum
    if run_dir is None:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    plot_curves(run_dir / "metrics.jsonl", run_dir / "plots" / "curves.png")
    summary = json.loads((run_dir / "summary.json").read_text())
    shown = {
        k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items() if not isinstance(v, (dict, list))
    }  # data_files (paths and sha256) stay in summary.json
    print(json.dumps(shown))
    print(f"run directory: {run_dir}")
    print("  summary.json, metrics.jsonl, config.toml, checkpoints/last.pt, plots/curves.png, tensorboard/")
    print(f"next: seqlab eval {run_dir}")
    return 0

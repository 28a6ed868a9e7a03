"""``seqlab plot``: a run's diagnostics (curves, gradient flow, gates, attention, positions) as PNGs."""

from __future__ import annotations

import argparse

from .common import MOVED_DATA, checkpoint_option, command, data_overrides

HELP = "diagnostic figures of a run: curves, gradient flow, gates, attention, positions"
DESCRIPTION = """\
Draw RUN_DIR's diagnostics as PNGs in RUN_DIR/plots/ (also as images in its TensorBoard) and print
their paths; what does not apply to the run's model is skipped with one line saying why.
The model runs on the CPU in fp32 (no --device or --precision: the diagnostics read fp32 activations)."""


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "plot", HELP, DESCRIPTION, MOVED_DATA)
    p.add_argument("run_dir")
    p.add_argument("--what", default="all", choices=["curves", "gradflow", "gates", "attention", "posenc", "all"])
    p.add_argument("--example", type=int, default=0, help="which example of the test split to draw (default: 0)")
    checkpoint_option(p)
    p.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="OTHER_RUN",
        help="other run directories whose curves go on the same axes (plots/curves_compare.png)",
    )
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from ..diagnostics.plots import RunDiagnostics

    location = data_overrides(extra)
    diag = RunDiagnostics(args.run_dir, checkpoint=args.checkpoint, example=args.example, data_location=location)
    for result in diag.plot(args.what, compare=args.compare):
        if result.skipped:
            print(f"skipped {result.what}: {result.skipped}")
            continue
        for line in result.lines:
            print(line)
        for path in result.paths:
            print(path)
    return 0

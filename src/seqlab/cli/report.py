"""``seqlab report``: one self-contained HTML page about a run, RUN_DIR/report.html."""

from __future__ import annotations

import argparse

from .common import MOVED_DATA, checkpoint_option, command, data_overrides

HELP = "one self-contained HTML page about a run: RUN_DIR/report.html"
DESCRIPTION = """\
Write RUN_DIR/report.html: config, summary metrics, curves, every diagnostic that applies, an
interactive attention view and example outputs; no network needed.
The model runs on the CPU in fp32 (no --device or --precision)."""


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "report", HELP, DESCRIPTION, MOVED_DATA)
    p.add_argument("run_dir")
    p.add_argument("--example", type=int, default=0, help="which example of the test split to draw (default: 0)")
    checkpoint_option(p)
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from ..diagnostics.report import build_report

    location = data_overrides(extra)
    path, results = build_report(args.run_dir, example=args.example, checkpoint=args.checkpoint, data_location=location)
    for result in results:
        if result.skipped:
            print(f"skipped {result.what}: {result.skipped}")
    print(f"{path}  ({path.stat().st_size / 1e6:.2f} MB)")
    return 0

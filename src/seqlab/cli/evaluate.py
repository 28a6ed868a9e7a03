"""``seqlab eval``: a run's checkpoint on one split of its data, metrics printed as JSON."""

from __future__ import annotations

import argparse
import json

from ..config import ConfigError
from .common import checkpoint_option, command, data_overrides, device_option, precision_option, warn_as
from .generate import add_generation_flag

HELP = "evaluate a run directory's checkpoint on a split"
DESCRIPTION = """\
Rebuild the model and data of RUN_DIR and print its metrics as JSON. The data's vocabulary must be
the one stored with the run (refused otherwise). A seq2seq run's outputs go to
RUN_DIR/predictions[-CHECKPOINT][-SPLIT][-beamN].tsv and scores[...].json, which name the checkpoint
and its step (no CHECKPOINT part for last.pt). The model computes in fp32 unless --precision says
otherwise; the JSON says which ("precision")."""


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "eval", HELP, DESCRIPTION)
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    checkpoint_option(p)
    device_option(p)
    precision_option(p)
    add_generation_flag(p, "num_beams", help="seq2seq runs: decode with beam search of width N (default 1: greedy)")
    add_generation_flag(p, "length_penalty")
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from ..runs import evaluate_run

    location = data_overrides(extra)
    if args.num_beams < 1:
        raise ConfigError(f"--beam must be >= 1 (1: greedy), got {args.num_beams}")
    metrics = evaluate_run(
        args.run_dir,
        split=args.split,
        checkpoint=args.checkpoint,
        data_location=location,
        notify=warn_as("eval"),
        beam=args.num_beams,
        length_penalty=args.length_penalty,
        device=args.device,
        precision=args.precision,
    )
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}))  # signatures: text
    return 0

"""``seqlab export``: a run's model as safetensors, ONNX or a Hugging Face GPT-2 folder (docs/export.md)."""

from __future__ import annotations

import argparse

from .common import command, overrides

HELP = "write a run's model as safetensors, ONNX or a Hugging Face GPT-2 folder"
DESCRIPTION = "Export RUN_DIR's checkpoint for other tools (docs/export.md), atomically (temp folder, rename)."


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "export", HELP, DESCRIPTION)
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, help="safetensors, onnx or hf (a GPT as Hugging Face GPT-2)")
    p.add_argument("--checkpoint", default="last.pt", help="file in RUN_DIR/checkpoints (default: last.pt)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export/FORMAT)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from ..export import export_run

    overrides(extra, ())
    out, files = export_run(
        args.run_dir, format=args.format, out=args.out, checkpoint=args.checkpoint, force=args.force
    )
    print(f"{out}: {', '.join(files)}")
    return 0

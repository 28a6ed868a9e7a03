"""``seqlab export``: a run's model as safetensors, ONNX or a Hugging Face GPT-2 folder (docs/export.md)."""

from __future__ import annotations

import argparse

from .common import command, data_overrides

HELP = "write a run's model as safetensors, ONNX or a Hugging Face GPT-2 folder"
DESCRIPTION = "Export RUN_DIR's checkpoint for other tools (docs/export.md), atomically (temp folder, rename)."
EPILOG = """\
A run saved before seqlab stored vocabularies with it (and a series run, whose normalization is fitted
on its data) reads its data to export them; where that data has moved, say where it is now with
--data.path=FILE or --data.root=DIR (its content must be the same)."""


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "export", HELP, DESCRIPTION, EPILOG)
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, help="safetensors, onnx or hf (a GPT as Hugging Face GPT-2)")
    p.add_argument("--checkpoint", default="last.pt", help="file in RUN_DIR/checkpoints (default: last.pt)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export/FORMAT)")
    p.add_argument("--force", action="store_true", help="replace an earlier export in --out (nothing else)")
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from ..export import export_run

    out, files = export_run(
        args.run_dir,
        format=args.format,
        out=args.out,
        checkpoint=args.checkpoint,
        force=args.force,
        data_location=data_overrides(extra),
    )
    print(f"{out}: {', '.join(files)}")
    return 0

"""Models that leave seqlab: a run's checkpoint as safetensors, ONNX or a Hugging Face GPT-2 folder.

    from seqlab.export import export_run, load_pretrained
    out = export_run("runs/shakespeare", format="safetensors")   # runs/shakespeare/export/safetensors
    model = load_pretrained(out)                                  # no pickle read

Every export is written into a temporary folder and renamed into place; a refusal (no checkpoint,
a corrupt one, an unknown format, a non-empty ``out`` without ``force``, a model the format cannot
hold) is a ``ConfigError`` with the reason, and nothing is written. See docs/export.md.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from .common import atomic_dir, check_out, read_run
from .safetensors import load_pretrained, load_vocabularies

FORMATS = ("safetensors", "onnx", "hf")

__all__ = ["FORMATS", "export_run", "load_pretrained", "load_vocabularies"]


def export_run(
    run_dir: str | Path,
    *,
    format: str,
    out: str | Path | None = None,
    checkpoint: str = "last.pt",
    force: bool = False,
    data_location: dict[str, str] | None = None,
) -> tuple[Path, list[str]]:
    """Export ``RUN_DIR/checkpoints/<checkpoint>`` as ``format`` into ``out`` (default RUN_DIR/export/<format>).

    ``data_location`` (e.g. ``{"path": ...}``): where the run's data is now, for a run that reads it
    (saved before vocabularies were stored with runs, or a series run). Returns the folder and the
    names of the files written in it.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out) if out is not None else Path(run_dir) / "export" / format
    check_out(out, force)  # before the (slow) work, so a refusal costs nothing
    run = read_run(run_dir, checkpoint, data_location)
    if format == "safetensors":
        from .safetensors import write_safetensors as write
    elif format == "onnx":
        from .onnx import write_onnx as write
    else:
        from .hf import write_hf as write
    with atomic_dir(out, force) as tmp:
        write(run, tmp)
        files = sorted(p.name for p in tmp.iterdir())
    return out, files

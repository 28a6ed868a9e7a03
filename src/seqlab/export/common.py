"""What every export format shares: the run's model and vocabulary, config.json, and the atomic output folder.

An export is written into a hidden temporary folder beside ``--out`` and renamed into place at
the end, so an interrupted or refused export leaves nothing half-written, and an existing
non-empty ``--out`` is replaced only with ``force``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, to_dict
from ..data import resolve_locations
from ..runs import build_run_data, load_run  # the one place a run's model is rebuilt from its checkpoint
from ..runs.use import stored_vocabularies
from ..task import Task
from ..train.config import Experiment

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
SEQLAB_FILE = "seqlab.json"  # an hf export's manifest (its config.json is GPT-2's)


@dataclass
class ExportedRun:
    """A run ready to export: its experiment, model (eval mode, CPU), checkpoint facts and vocabularies."""

    run_dir: Path
    checkpoint: str
    exp: Experiment
    model: torch.nn.Module
    task: Task
    step: int
    data_files: dict

    stored: dict | None = None  # the vocabularies stored in the checkpoint (None: a run saved before they were)

    @functools.cached_property
    def _decoding(self) -> tuple[dict, str, dict | None]:
        return run_decoding(self.exp, self.run_dir, self.task, self.stored)  # read when needed: after any refusal

    @property
    def vocabularies(self) -> dict:
        """ "vocab" (a language model) or "src_vocab" and "tgt_vocab" (seq2seq) -> Vocabulary; {} for other tasks."""
        return self._decoding[0]

    @property
    def token_separator(self) -> str:
        """What joins decoded tokens: "" for characters, " " for words."""
        return self._decoding[1]

    @property
    def normalization(self) -> dict | None:
        """A series run's z = (v - shift) / scale, fitted on its training part: the model reads and writes z."""
        return self._decoding[2]


def read_run(run_dir: str | Path, checkpoint: str = "last.pt", data_location: dict | None = None) -> ExportedRun:
    """The run's model rebuilt from ``checkpoints/<checkpoint>``, and its vocabularies; ConfigError if unreadable.
    ``data_location``: where the run's data is now, if it moved (see :func:`seqlab.runs.load_run`)."""
    exp, model, ckpt = load_run(run_dir, checkpoint, data_location, action="export")
    task = Task(ckpt.get("task", Task.CLASSIFICATION))
    return ExportedRun(
        run_dir=Path(run_dir),
        checkpoint=checkpoint,
        exp=exp,
        model=model.eval(),
        task=task,
        step=int(ckpt["step"]),
        data_files=ckpt.get("data_files") or {},
        stored=stored_vocabularies(ckpt),
    )


def run_decoding(exp: Experiment, run_dir: Path, task: Task, stored: dict | None) -> tuple[dict, str, dict | None]:
    """What using the model needs besides its weights: vocabularies and token separator (language-model and
    seq2seq runs), or a series run's normalization.

    The vocabularies are the ones stored with the run (``stored``); only a run saved before they were stored,
    and a series run (whose normalization is fitted on its data), read the run's data here. A run of another
    kind has none and needs no data.
    """
    if stored is not None:
        vocabularies = {k: stored[k] for k in ("vocab", "src_vocab", "tgt_vocab") if stored.get(k) is not None}
        return vocabularies, stored.get("token_separator", ""), None
    if task not in (Task.LANGUAGE_MODEL, Task.SEQ2SEQ) and not hasattr(exp.data, "normalize"):
        return {}, "", None
    info = build_run_data(resolve_locations(exp.data), run_dir).info
    vocabularies = {k: info[k] for k in ("vocab", "src_vocab", "tgt_vocab") if info.get(k) is not None}
    scaler = info.get("scaler")
    normalization = None if scaler is None else {"shift": scaler.shift, "scale": scaler.scale, "kind": scaler.kind}
    return vocabularies, info.get("token_separator", ""), normalization


def vocab_json(run: ExportedRun) -> dict[str, Any]:
    """vocab.json: id i is ``itos[i]``; specials are named; ``token_separator`` joins decoded tokens."""
    return {
        "token_separator": run.token_separator,
        **{name: {"itos": v.itos, "specials": list(v.specials)} for name, v in run.vocabularies.items()},
    }


def config_json(run: ExportedRun, fmt: str, files: dict[str, str]) -> dict[str, Any]:
    """config.json: the model config (enough to rebuild it), where it came from, and what each file holds."""
    return {
        "format": fmt,
        "seqlab_version": _version(),
        "model_config": to_dict(run.exp.model),
        "task": str(run.task),
        "files": files,
        "vocab": VOCAB_FILE if run.vocabularies else None,
        "normalization": run.normalization,  # a series model reads and predicts (v - shift) / scale
        "source": {"run_dir": str(run.run_dir.resolve()), "checkpoint": run.checkpoint, "step": run.step},
        "data_config": to_dict(run.exp.data),
        "data_files": run.data_files,  # size and sha256 of every data file the run read
    }


def _version() -> str:
    """The installed seqlab's version (read from its metadata: the package root is above this layer)."""
    try:
        return importlib.metadata.version("seqlab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


MANIFESTS = (CONFIG_FILE, SEQLAB_FILE)  # the file that lists an export's files: safetensors and ONNX; hf


def check_out(out: Path, force: bool) -> None:
    """Refuse an existing non-empty ``out`` unless ``force``; refuse a file where a folder must go.

    ``force`` replaces only an earlier export: a folder whose every entry its manifest (config.json,
    or seqlab.json for hf) lists. Anything else (a run directory, a folder of runs, ``checkpoints/``)
    is refused even with ``force``: replacing it would delete what export never wrote.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder path")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise ConfigError(f"--out {out} exists and is not empty; give another --out, or --force to replace it")
    written = _export_files(out)
    foreign = sorted(p.name for p in out.iterdir() if p.name not in written)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(
            f"--out {out} holds {shown}, which seqlab export did not write: --force replaces only an earlier "
            "export, and would delete them; give another --out"
        )


def _export_files(folder: Path) -> set[str]:
    """The names an earlier export in ``folder`` wrote: its manifest and the files it lists (empty if none)."""
    for manifest in MANIFESTS:
        try:
            value = json.loads((folder / manifest).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(value, dict) and "seqlab_version" in value and isinstance(value.get("files"), dict):
            # save_pretrained writes it, and hf manifests written before this check did not list it
            extra = {"generation_config.json"} if manifest == SEQLAB_FILE else set()
            return {manifest, *map(str, value["files"]), *extra}
    return set()


def _settle_files(folder: Path) -> None:
    """Each file on disk (fsync) with the usual permissions (safetensors writes its file 0600)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            os.chmod(path, 0o666 & ~_umask())
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_dir(out: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write into; renamed to ``out`` when the block ends without error."""
    check_out(out, force)
    made = not out.parent.exists()  # RUN_DIR/export: removed again if nothing comes of this export
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        yield tmp
        _settle_files(tmp)  # on disk before the rename: a power cut never leaves a renamed folder of empty files
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the usual permissions
        old = None
        if out.exists():
            if any(out.iterdir()):  # force: move the old export aside, put the new one in place, then delete the old
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
                os.replace(out, old / out.name)
            else:
                out.rmdir()
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            if made and not any(out.parent.iterdir()):
                out.parent.rmdir()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask

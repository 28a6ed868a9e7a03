"""The run directory store: a new run's folder, a run's checkpoint, its experiment and model, its data.

A run directory ``runs/<name>-<timestamp>/`` holds ``config.toml`` (resolved), ``command.txt``,
``metrics.jsonl``, ``checkpoints/{last,best}.pt`` and ``summary.json``. A run's data files are
fingerprinted (size and sha256) when it is trained, so that a moved file is recognised and a
changed one is said.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, from_dict, to_dict
from ..data import DATASETS, LOCATION_KEYS, DataError, Splits, build_splits, resolve_locations
from ..models import build_model
from ..train.checkpoint import CheckpointError, load_checkpoint
from ..train.config import Experiment, experiment_from_dict
from .use import checkpoint_name


def check_run_name(name: str) -> None:
    """A run name is one folder name: ``--name ../x`` or ``--name a/b`` would put the run outside ``--out``."""
    if not name or any(sep and sep in name for sep in ("/", os.sep, os.altsep)) or name in (".", ".."):
        raise ConfigError(
            f"--name must be a plain folder name (no '/', not '.' or '..'), so that the run stays "
            f"inside --out; got {name!r}"
        )


def new_run_dir(out: str | Path, name: str) -> Path:
    """``out/<name>-<YYYYmmdd-HHMMSS>``, with a numeric suffix if that exists already (never reused)."""
    check_run_name(name)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    try:
        path.mkdir(parents=True)
    except OSError as err:  # --out is a file, or not writable: the user's to fix
        raise ConfigError(f"cannot create the run directory {path} under --out {out}: {err.strerror or err}") from None
    return path


def config_diff(old: dict[str, Any], new: dict[str, Any], section: str) -> list[str]:
    """Lines ``section.key: checkpoint X, now Y`` for every key that differs."""
    keys = sorted(set(old) | set(new))
    return [f"{section}.{k}: checkpoint {old.get(k)!r}, now {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _describe_file(fp: dict[str, Any]) -> str:
    size = f"{fp['size']:,} bytes, " if fp.get("size") is not None else ""
    return f"{size}sha256 {fp['sha256'][:12]}"


def data_file_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """One line per data file that differs from the run's record (``info["files"]`` when it was trained).

    Files are matched by role (``data.path``, an IDX file's name, ``embedded``), so the same file
    in a new place is no change; a run saved before fingerprints were kept (``old`` None) has none.
    """
    if old is None:
        return []
    lines = []
    for role in sorted(set(old) | set(new)):
        then, now = old.get(role), new.get(role)
        if then is not None and now is not None and then["sha256"] == now["sha256"]:
            continue
        if then is None:
            lines.append(f"data file {now['path']} was not read when the run was trained")
        elif now is None:
            lines.append(f"data file {then['path']}, read when the run was trained, is not read now")
        else:
            moved = f" (then at {then['path']})" if then["path"] != now["path"] else ""
            lines.append(
                f"data file {now['path']} is not the one the run was trained on{moved}: "
                f"then {_describe_file(then)}, now {_describe_file(now)}"
            )
    return lines


def without_locations(data: dict[str, Any]) -> dict[str, Any]:
    """A data config without the keys that say where its files are (compared by fingerprint instead)."""
    return {k: v for k, v in data.items() if k not in LOCATION_KEYS}


def resolved_data(data: dict[str, Any]) -> dict[str, Any]:
    """A stored data config with its locations made absolute as ``resolve_locations`` does (as stored if it cannot)."""
    try:
        return to_dict(resolve_locations(from_dict(DATASETS[data["name"]].config, data, "data")))
    except (ConfigError, KeyError):
        return data


def build_run_data(data_cfg, run_dir: Path) -> Splits:
    """The splits of an existing run's data; a file that is not where the run left it says how to point at it."""
    try:
        return build_splits(data_cfg)
    except DataError as err:
        keys = [k for k in LOCATION_KEYS if hasattr(data_cfg, k)]
        if not keys:
            raise
        raise DataError(
            f"{err} (run {run_dir}: if its data moved, give the new location with "
            + " or ".join(f"--data.{k}=..." for k in keys)
            + ")"
        ) from None


def read_run_checkpoint(run_dir: str | Path, checkpoint: str = "last.pt", action: str = "load") -> dict[str, Any]:
    """``RUN_DIR/checkpoints/<checkpoint>``; a missing directory or file or a bad checkpoint is a ConfigError
    (``action``, e.g. "resume", says what there is nothing to do when the run has no checkpoint yet)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory not found: {run_dir}")
    ckpt_path = run_dir / "checkpoints" / checkpoint_name(checkpoint)
    if not ckpt_path.is_file():
        existing = (
            sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").is_dir() else []
        )
        if existing:
            raise ConfigError(f"{run_dir} has no checkpoints/{checkpoint}; checkpoints there: {', '.join(existing)}")
        if (run_dir / "config.toml").is_file():
            raise ConfigError(
                f"{run_dir} has no checkpoint yet (the run stopped before writing its first one); nothing to {action}"
            )
        raise ConfigError(f"{run_dir} has no checkpoints/{checkpoint}: is it a seqlab run directory?")
    try:
        ckpt = load_checkpoint(ckpt_path)
    except CheckpointError as err:
        raise ConfigError(str(err)) from None
    missing = [
        k
        for k in ("model", "model_config", "data_config", "train_config", "step")
        if not isinstance(ckpt, dict) or k not in ckpt
    ]
    if missing:
        raise ConfigError(f"{ckpt_path} is not a seqlab checkpoint: it has no {', '.join(missing)}")
    return ckpt


def check_data_location(data_location: dict[str, str] | None) -> None:
    """An existing run takes only its data's location (``LOCATION_KEYS``): its data config is its own."""
    other = sorted(set(data_location or {}) - set(LOCATION_KEYS))
    if other:
        raise ConfigError(
            f"only the data's location can be given for an existing run (--data.path, --data.root), "
            f"not --data.{other[0]}: its data config is the one it was trained with"
        )


def load_run(
    run_dir: str | Path, checkpoint: str = "last.pt", data_location: dict[str, str] | None = None, action: str = "load"
) -> tuple[Experiment, torch.nn.Module, dict]:
    """The experiment and trained model of a run directory, rebuilt from the checkpoint's configs.

    ``data_location`` (e.g. ``{"path": "/new/place/input.txt"}``) points the data config at where
    the run's data is now; only the keys in ``LOCATION_KEYS`` may be given.
    """
    ckpt = read_run_checkpoint(run_dir, checkpoint, action)
    check_data_location(data_location)
    exp = experiment_from_dict(
        {
            "model": ckpt["model_config"],
            "data": {**ckpt["data_config"], **(data_location or {})},
            "train": ckpt["train_config"],
        }
    )
    model = build_model(exp.model)
    model.load_state_dict(ckpt["model"])
    return exp, model, ckpt

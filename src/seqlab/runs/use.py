"""Using a trained run after training (eval, generate, plot, report): which device, which vocabulary, which
checkpoint.

- The device is the run's ``train.device`` unless ``--device`` says otherwise, so that a run trained on a
  GPU is usable on a laptop (``--device cpu``).
- The precision is fp32 unless ``--precision`` says otherwise (bf16 autocast around the forward passes;
  ``auto``: bf16 where the device computes it natively), the trainer's rule (``resolve_precision``).
- The vocabularies are the run's own, stored in its checkpoints (``vocabularies``, plain lists): decoding
  never rebuilds them from the data. A run saved before they were stored falls back to its data, with a
  warning; data whose vocabulary differs from the run's is refused, never read through shifted ids.
- A checkpoint must belong to its run: its model and data configs are compared with ``config.toml``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, load_toml
from ..data import LOCATION_KEYS
from ..data.vocab import vocabularies_from_record, vocabulary_difference
from ..train.distributed import resolve_device
from ..train.trainer import resolve_precision

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "auto")


def run_device(train_device: str, device: str | None) -> torch.device:
    """``device`` (``--device``) if given, else the run's ``train.device``; one line naming the flag if it is absent."""
    name = device or train_device
    try:
        return resolve_device(name)
    except ConfigError:
        given = f"--device {name}" if device else f"this run was trained with train.device = {name}, and"
        raise ConfigError(f"{given}: no {name.upper()} device is available here; give --device cpu (or auto)") from None


def run_precision(precision: str, device: torch.device, notify: Callable[[str], None]) -> str:
    """``--precision`` on ``device``: "fp32" or "bf16" ("auto": bf16 where native); an emulated bf16 is said
    through ``notify``, as training warns."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        resolved = resolve_precision(precision, device, option="--precision")
    for w in said:
        notify(str(w.message))
    return resolved


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision == "bf16"``; nothing (plain fp32) otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def checkpoint_name(checkpoint: str) -> str:
    """``--checkpoint`` is a file name in RUN_DIR/checkpoints; a path is refused (it would not be the run's)."""
    if not checkpoint or Path(checkpoint).name != checkpoint or checkpoint in (".", ".."):
        raise ConfigError(
            f"--checkpoint names a file in RUN_DIR/checkpoints (e.g. best.pt), not a path: got {checkpoint!r}; "
            f"a checkpoint elsewhere is a run of its own: give its run directory"
        )
    return checkpoint


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def not_this_runs(run_dir: str | Path, ckpt: dict) -> list[str]:
    """``section.key: checkpoint X, config.toml Y`` for each model or data key (locations aside) where the
    checkpoint differs from RUN_DIR/config.toml; empty when it belongs to the run (or there is no config.toml)."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        return []
    try:
        saved = load_toml(path)
    except ConfigError as err:
        return [str(err)]
    lines = []
    for section, key in (("model", "model_config"), ("data", "data_config")):
        toml, stored = saved.get(section, {}), ckpt.get(key, {})
        for k in sorted(set(toml) | set(stored)):
            if section == "data" and k in LOCATION_KEYS:
                continue
            a, b = _plain(stored.get(k)), _plain(toml.get(k))
            if a != b and not (k not in toml and a is None):  # TOML has no null: a None is left out
                lines.append(f"{section}.{k}: checkpoint {a!r}, config.toml {b!r}")
    return lines


def check_belongs(run_dir: str | Path, checkpoint: str, ckpt: dict, notify: Callable[[str], None]) -> None:
    """Say (one line through ``notify``) when checkpoints/<checkpoint> was not trained with the run's config.toml."""
    diff = not_this_runs(run_dir, ckpt)
    if diff:
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        notify(
            f"checkpoints/{checkpoint} does not belong to {run_dir}: its config differs from config.toml: "
            + "; ".join(diff[:3])
            + more
        )


def stored_vocabularies(ckpt: dict) -> dict | None:
    """The run's vocabularies and decoding settings from its checkpoint (``{"vocab": Vocabulary, ...}``), or
    None for a run saved before seqlab stored them (or whose data has no vocabulary)."""
    record = ckpt.get("vocabularies")
    if record is None:
        return None
    try:
        return vocabularies_from_record(record)
    except ValueError as err:
        raise ConfigError(f"the checkpoint's stored vocabularies cannot be read: {err}") from None


def check_same_vocabularies(stored: dict | None, info: dict, run_dir: str | Path) -> None:
    """Refuse data whose vocabulary is not the run's: its ids would mean other tokens to the model."""
    problem = vocabulary_difference(stored or {}, info)
    if problem:
        raise ConfigError(
            f"the data gives another vocabulary than {run_dir} was trained with ({problem}): its ids would "
            f"mean other tokens to the model; point --data.path (or --data.root) at the data the run was trained on"
        )


OLD_RUN = (
    "{run_dir}'s checkpoint holds no vocabulary (saved before seqlab stored it with the run): rebuilt from "
    "its data, which must be the text it was trained on (a run trained now stores it)"
)

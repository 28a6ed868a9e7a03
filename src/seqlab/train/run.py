"""A run from config to run directory, and its evaluation afterwards.

A run directory ``runs/<name>-<timestamp>/`` holds ``config.toml`` (resolved), ``command.txt``,
``metrics.jsonl``, ``checkpoints/{last,best}.pt`` and ``summary.json``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, dump_toml
from ..data import build_splits
from ..models import build_model
from ..utils import atomic_write_text, count_parameters, set_seed
from .checkpoint import CheckpointError, load_checkpoint
from .config import Experiment, experiment_from_dict
from .trainer import Trainer, evaluate, resolve_device


def new_run_dir(out: str | Path, name: str) -> Path:
    """``out/<name>-<YYYYmmdd-HHMMSS>``, with a numeric suffix if that exists already (never reused)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


def check_shapes(exp: Experiment, info: dict[str, Any]) -> None:
    """The model's declared input size and classes must match what the data gives."""
    for key in ("input_size", "num_classes"):
        if key in info and hasattr(exp.model, key) and getattr(exp.model, key) != info[key]:
            raise ConfigError(
                f"model.{key} = {getattr(exp.model, key)} but data '{exp.data.name}' gives {info[key]}; "
                f"set --model.{key}={info[key]}"
            )


def train_experiment(exp: Experiment, *, out: str | Path = "runs", run_name: str | None = None,
                     argv: list[str] | None = None, progress: bool = True) -> Path:
    """Train ``exp`` into a new run directory, evaluate on the test split; return the directory.

    ``argv`` is the command line's arguments (default ``sys.argv[1:]``), kept in ``command.txt``.
    """
    set_seed(exp.train.seed)
    splits = build_splits(exp.data)
    check_shapes(exp, splits.info)
    model = build_model(exp.model)
    run_dir = new_run_dir(out, run_name or f"{exp.data.name}-{exp.model.name}")
    atomic_write_text(run_dir / "config.toml", dump_toml(exp.to_dict()))
    args = sys.argv[1:] if argv is None else argv
    atomic_write_text(run_dir / "command.txt", shlex.join(["seqlab", *args]) + "\n")
    task = splits.info.get("task", "classification")
    configs = exp.to_dict()
    trainer = Trainer(model, exp.train, splits.train, splits.val, task=task, run_dir=run_dir, progress=progress,
                      checkpoint_extra=lambda: {"model_config": configs["model"], "data_config": configs["data"],
                                                "train_config": configs["train"], "task": task})
    fit = trainer.fit()
    test = evaluate(trainer.model, splits.test, task=task, device=trainer.device)
    summary = {**{f"test/{k}": v for k, v in test.items()}, "params": count_parameters(model),
               "steps": fit["steps"], "seconds": round(fit["seconds"], 3),
               f"best_val/{trainer.metric}": fit[f"best_val/{trainer.metric}"],
               "task": task, "model": exp.model.name, "data": exp.data.name}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return run_dir


def load_run(run_dir: str | Path, checkpoint: str = "last.pt") -> tuple[Experiment, torch.nn.Module, dict]:
    """The experiment and trained model of a run directory, rebuilt from the checkpoint's configs."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory not found: {run_dir}")
    ckpt_path = run_dir / "checkpoints" / checkpoint
    if not ckpt_path.is_file():
        raise ConfigError(f"{run_dir} has no checkpoints/{checkpoint}: is it a seqlab run directory?")
    try:
        ckpt = load_checkpoint(ckpt_path)
    except CheckpointError as err:
        raise ConfigError(str(err)) from None
    exp = experiment_from_dict({"model": ckpt["model_config"], "data": ckpt["data_config"],
                                "train": ckpt["train_config"]})
    model = build_model(exp.model)
    model.load_state_dict(ckpt["model"])
    return exp, model, ckpt


def evaluate_run(run_dir: str | Path, split: str = "test", checkpoint: str = "last.pt") -> dict[str, float]:
    """Metrics of a trained run on one split of its data, rebuilt exactly as in training."""
    exp, model, ckpt = load_run(run_dir, checkpoint)
    splits = build_splits(exp.data)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; expected train, val or test")
    device = resolve_device(exp.train.device)
    start = time.perf_counter()
    metrics = evaluate(model.to(device), getattr(splits, split), task=ckpt.get("task", "classification"),
                       device=device)
    return {**{f"{split}/{k}": v for k, v in metrics.items()}, "seconds": time.perf_counter() - start}

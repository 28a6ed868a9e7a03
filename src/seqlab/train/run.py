"""A run from config to run directory, and its evaluation afterwards.

A run directory ``runs/<name>-<timestamp>/`` holds ``config.toml`` (resolved), ``command.txt``,
``metrics.jsonl``, ``checkpoints/{last,best}.pt`` and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import ConfigError, dump_toml, merge, parse_overrides, toml_value
from ..data import build_splits
from ..models import build_model
from ..utils import atomic_write_text, count_parameters, set_seed
from .checkpoint import CheckpointError, load_checkpoint
from .config import Experiment, experiment_from_dict
from .distributed import init_distributed, shutdown
from .likelihood import sequence_log_likelihood, unigram_probs
from .trainer import Trainer, check_trainable, evaluate, resolve_device


def new_run_dir(out: str | Path, name: str) -> Path:
    """``out/<name>-<YYYYmmdd-HHMMSS>``, with a numeric suffix if that exists already (never reused)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


FROM_DATA = ("input_size", "num_classes", "vocab_size")  # model sizes that 0 means: take the data's


def fill_from_data(model_cfg, values: dict[str, Any]):
    """``model_cfg`` with each of its FROM_DATA sizes that is 0 set from ``values`` (the data's info,
    or a checkpoint's model config); sizes set by the user are left for ``check_shapes`` to compare."""
    given = {k: values[k] for k in FROM_DATA if getattr(model_cfg, k, None) == 0 and k in values}
    return dataclasses.replace(model_cfg, **given) if given else model_cfg


def check_shapes(exp: Experiment, info: dict[str, Any]) -> None:
    """The model's declared input size, classes, vocabulary and window length must match what the data gives.

    A model config whose examples have a fixed shape (a ViT's images) exposes it as ``input_shape``
    (no batch dim), compared with the data's ``info["input_shape"]``; its ``settings_for_input(shape)``,
    if it has one, names the keys to set.
    """
    for key in ("input_size", "num_classes", "vocab_size", "tau"):
        if key in info and hasattr(exp.model, key) and getattr(exp.model, key) != info[key]:
            raise ConfigError(
                f"model.{key} = {getattr(exp.model, key)} but data '{exp.data.name}' gives {info[key]}; "
                f"set --model.{key}={info[key]}"
            )
    block = getattr(exp.model, "block_size", None)
    if block is not None and info.get("seq_len", 0) > block:
        raise ConfigError(f"data.seq_len = {info['seq_len']} but model '{exp.model.name}' reads at most "
                          f"model.block_size = {block} tokens; set --data.seq_len={block} "
                          f"or --model.block_size={info['seq_len']}")
    expected, given = getattr(exp.model, "input_shape", None), info.get("input_shape")
    if expected is not None and given is not None and tuple(expected) != tuple(given):
        given = tuple(given)
        fix = exp.model.settings_for_input(given) if hasattr(exp.model, "settings_for_input") else {}
        now = ", ".join(f"model.{k} = {toml_value(getattr(exp.model, k))}" for k in fix)
        message = (f"model '{exp.model.name}' reads examples of shape {tuple(expected)}"
                   + (f" ({now})" if now else "") + f" but data '{exp.data.name}' gives {given}; ")
        if fix:
            message += "set " + " ".join(f"--model.{k}={toml_value(v).replace(' ', '')}" for k, v in fix.items())
        else:
            message += "no model setting reads that shape: choose another data view or model"
        raise ConfigError(message)


def config_diff(old: dict[str, Any], new: dict[str, Any], section: str) -> list[str]:
    """Lines ``section.key: checkpoint X, now Y`` for every key that differs."""
    keys = sorted(set(old) | set(new))
    return [f"{section}.{k}: checkpoint {old.get(k)!r}, now {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def train_experiment(exp: Experiment | None, *, out: str | Path = "runs", run_name: str | None = None,
                     argv: list[str] | None = None, progress: bool = True, resume: str | Path | None = None,
                     overrides: list[str] | None = None,
                     callbacks: dict[str, list[Callable[[Trainer], None]]] | None = None,
                     notify: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> Path | None:
    """Train ``exp`` into a new run directory (or continue ``resume``), evaluate on the test split.

    Returns the run directory (None on torchrun processes other than rank 0, which write nothing).
    ``argv`` is the command line's arguments (default ``sys.argv[1:]``), kept in ``command.txt``.
    With ``resume``, ``exp`` may be None (the run's own configs are used, with ``overrides``); a
    model or data config that differs from the checkpoint's is refused, showing the difference;
    changed ``train`` settings are announced through ``notify`` and apply from the resumed step.
    """
    ckpt = None
    if resume is not None:
        resume = Path(resume)
        ckpt = read_run_checkpoint(resume)
        saved = {"model": ckpt["model_config"], "data": ckpt["data_config"], "train": ckpt["train_config"]}
        if exp is None:
            exp = experiment_from_dict(merge(saved, parse_overrides(overrides or [])))
        exp = Experiment(fill_from_data(exp.model, saved["model"]), exp.data, exp.train)  # sizes it was built with
        now = exp.to_dict()
        diff = config_diff(saved["model"], now["model"], "model") + config_diff(saved["data"], now["data"], "data")
        if diff:
            raise ConfigError(f"the checkpoint in {resume} was trained with another model or data config:\n  "
                              + "\n  ".join(diff) + "\nresume with the run's own config (omit CONFIG) or start a new run")
        changed = config_diff(saved["train"], now["train"], "train")
        if changed:
            notify(f"resuming {resume} at step {ckpt['step']} with changed settings:\n  " + "\n  ".join(changed))
    assert exp is not None
    set_seed(exp.train.seed)
    splits = build_splits(exp.data)
    exp = Experiment(fill_from_data(exp.model, splits.info), exp.data, exp.train)
    check_shapes(exp, splits.info)
    task = splits.info.get("task", "classification")
    device = resolve_device(exp.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:  # settings that cannot work with this data are the user's to fix: before any file is written
        check_trainable(exp.train, splits.train, splits.val, task, world)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    model = build_model(exp.model)
    dist_info = init_distributed(device)
    run_dir = None
    if dist_info.is_main:
        run_dir = resume or new_run_dir(out, run_name or f"{exp.data.name}-{exp.model.name}")
        atomic_write_text(run_dir / "config.toml", dump_toml(exp.to_dict()))
        previous = (run_dir / "command.txt").read_text() if resume and (run_dir / "command.txt").is_file() else ""
        args = sys.argv[1:] if argv is None else argv
        atomic_write_text(run_dir / "command.txt", previous + shlex.join(["seqlab", *args]) + "\n")
    configs = exp.to_dict()
    try:
        trainer = Trainer(model, exp.train, splits.train, splits.val, task=task, run_dir=run_dir, progress=progress,
                          dist_info=dist_info, device=device,
                          checkpoint_extra=lambda: {"model_config": configs["model"], "data_config": configs["data"],
                                                    "train_config": configs["train"], "task": task})
        for event, fns in (callbacks or {}).items():
            for fn in fns:
                trainer.add_callback(event, fn)
        if ckpt is not None:
            trainer.load_state_dict(ckpt, resume / "checkpoints" / "last.pt")
        fit = trainer.fit()
        test = ({} if len(splits.test) == 0 else  # e.g. a 90/10 train/val split: nothing held out for test
                evaluate(trainer.model, splits.test, task=task, device=trainer.device, dist_info=dist_info))
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown()
    if run_dir is None:
        return None
    baseline = {f"baseline/{k}": v for k, v in splits.info.get("baseline", {}).items() if isinstance(v, (int, float))}
    summary = {**{f"test/{k}": v for k, v in test.items()}, **baseline, "params": count_parameters(model),
               "steps": fit["steps"], "seconds": round(fit["seconds"], 3),
               f"best_val/{trainer.metric}": fit[f"best_val/{trainer.metric}"], "stopped_early": fit["stopped_early"],
               "task": task, "model": exp.model.name, "data": exp.data.name, "processes": dist_info.world_size}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return run_dir


def read_run_checkpoint(run_dir: str | Path, checkpoint: str = "last.pt") -> dict[str, Any]:
    """``RUN_DIR/checkpoints/<checkpoint>``; a missing directory or file or a bad checkpoint is a ConfigError."""
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
    missing = [k for k in ("model", "model_config", "data_config", "train_config", "step")
               if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ConfigError(f"{ckpt_path} is not a seqlab checkpoint: it has no {', '.join(missing)}")
    return ckpt


def load_run(run_dir: str | Path, checkpoint: str = "last.pt") -> tuple[Experiment, torch.nn.Module, dict]:
    """The experiment and trained model of a run directory, rebuilt from the checkpoint's configs."""
    ckpt = read_run_checkpoint(run_dir, checkpoint)
    exp = experiment_from_dict({"model": ckpt["model_config"], "data": ckpt["data_config"],
                                "train": ckpt["train_config"]})
    model = build_model(exp.model)
    model.load_state_dict(ckpt["model"])
    return exp, model, ckpt


def evaluate_run(run_dir: str | Path, split: str = "test", checkpoint: str = "last.pt") -> dict[str, float]:
    """Metrics of a trained run on one split of its data, rebuilt exactly as in training.

    For a language model, also the chain rule over the split's whole text read as one stream
    (``train.likelihood``): log_likelihood, tokens, nll_per_token, perplexity, bits_per_char.
    The first character, which the model cannot predict, is scored by the training part's
    add-one-smoothed unigram frequency.
    """
    exp, model, ckpt = load_run(run_dir, checkpoint)
    splits = build_splits(exp.data)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; expected train, val or test")
    device = resolve_device(exp.train.device)
    start = time.perf_counter()
    dataset = getattr(splits, split)
    if len(dataset) == 0:
        raise ConfigError(f"the {split} split of {run_dir} is empty (its data config holds nothing out for it); "
                          f"evaluate another split, e.g. --split val")
    task = ckpt.get("task", "classification")
    metrics = evaluate(model.to(device), dataset, task=task, device=device)
    if task == "language_model" and hasattr(dataset, "ids"):
        # The whole part as one stream: log P(x_1..x_T) by the chain rule, bits per character.
        first = unigram_probs(splits.train.ids, splits.info["vocab_size"])  # P(x_1): the model has no BOS
        # A window model (a GPT) reads at most block_size tokens: strided windows instead of one stream.
        metrics.update(sequence_log_likelihood(model, dataset.ids, first_probs=first, device=device,
                                               context=getattr(exp.model, "block_size", None)))
    return {**{f"{split}/{k}": v for k, v in metrics.items()}, "seconds": time.perf_counter() - start}


def runs_table(root: str | Path = "runs") -> str:
    """A text table of the run directories under ``root`` (finished or not), oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"runs folder not found: {root}")
    rows = [("name", "task", "model", "params", "steps", "best val", "test", "seconds")]
    for run in sorted(p for p in root.iterdir() if (p / "config.toml").is_file()):
        summary_path = run / "summary.json"
        if summary_path.is_file():
            s = json.loads(summary_path.read_text())
            best = next(((k[len("best_val/"):], v) for k, v in s.items() if k.startswith("best_val/")), None)
            test = next(((k[len("test/"):], v) for k, v in s.items() if k.startswith("test/") and k != "test/loss"),
                        ("loss", s.get("test/loss")))
            fmt = lambda kv: f"{kv[0]} {kv[1]:.4f}" if kv and kv[1] is not None else "-"  # noqa: E731
            rows.append((run.name, s.get("task", "-"), s.get("model", "-"), f"{s.get('params', 0):,}",
                         str(s.get("steps", "-")), fmt(best), fmt(test), f"{s.get('seconds', 0):.1f}"))
        else:
            steps = "-"
            metrics = run / "metrics.jsonl"
            if metrics.is_file():
                lines = metrics.read_text().splitlines()
                steps = json.loads(lines[-1])["step"] if lines else 0
            rows.append((run.name, "-", "-", "-", f"{steps} (unfinished)", "-", "-", "-"))
    if len(rows) == 1:
        return f"no runs in {root}"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

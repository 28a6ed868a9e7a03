"""Train a run: an experiment into a new run directory (or a run continued), evaluated on its test split.

``train_experiment`` reads as its steps: the checks a resume must pass, the data, the fit, the summary.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, dump_toml, merge, parse_overrides
from ..data import LOCATION_KEYS, Splits, build_splits, resolve_locations
from ..data.vocab import vocabularies_record
from ..models import build_model
from ..task import Task
from ..train.checks import check_trainable
from ..train.config import Experiment, experiment_from_dict
from ..train.distributed import init_distributed, resolve_device, shutdown
from ..train.metrics import evaluate
from ..train.seq2seq_metrics import seq2seq_scores
from ..train.stops import NonFiniteLoss, TrainingInterrupted
from ..train.trainer import Trainer
from ..utils import atomic_write_text, count_parameters, set_seed
from .checks import check_shapes, fill_from_data
from .evaluate import split_metrics
from .store import (
    build_run_data,
    check_run_name,
    config_diff,
    data_file_changes,
    new_run_dir,
    read_run_checkpoint,
    resolved_data,
    without_locations,
)


@dataclass(frozen=True)
class Resumed:
    """A run being continued: its directory, its last checkpoint and the configs it was trained with."""

    run_dir: Path
    ckpt: dict[str, Any]
    saved: dict[str, dict[str, Any]]  # {"model": ..., "data": ..., "train": ...} as in the checkpoint


def train_experiment(
    exp: Experiment | None,
    *,
    out: str | Path = "runs",
    run_name: str | None = None,
    argv: list[str] | None = None,
    progress: bool = True,
    resume: str | Path | None = None,
    overrides: list[str] | None = None,
    callbacks: dict[str, list[Callable[[Trainer], None]]] | None = None,
    notify: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> Path | None:
    """Train ``exp`` into a new run directory (or continue ``resume``), evaluate on the test split.

    Returns the run directory (None on torchrun processes other than rank 0, which write nothing).
    ``argv`` is the command line's arguments (default ``sys.argv[1:]``), kept in ``command.txt``.
    With ``resume``, ``exp`` may be None (the run's own configs are used, with ``overrides``); a
    model or data config that differs from the checkpoint's is refused, showing the difference;
    changed ``train`` settings are announced through ``notify`` and apply from the resumed step.
    """
    if run_name is not None:
        check_run_name(run_name)
    resumed = None
    if resume is not None:
        exp, resumed = resume_checks(exp, Path(resume), overrides)
    assert exp is not None
    exp = Experiment(exp.model, resolve_locations(exp.data), exp.train)  # absolute: the run works from any folder
    if resumed is not None:
        check_same_configs(exp, resumed)
    set_seed(exp.train.seed)
    exp, splits = run_data(exp, resumed, notify)
    trainer, fit, test, run_dir = fit_run(exp, splits, resumed, out, run_name, argv, progress, callbacks, notify)
    if run_dir is None:
        return None
    summary = run_summary(exp, splits, trainer, fit, test, run_dir)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return run_dir


# -- 1. the checks a resume passes before anything is built ----------------------------------------


def resume_checks(exp: Experiment | None, run_dir: Path, overrides: list[str] | None) -> tuple[Experiment, Resumed]:
    """The run's last checkpoint, and the experiment to continue: ``exp``, or the run's own configs with
    ``overrides``; model sizes that the config leaves to the data are the ones the run was built with."""
    ckpt = read_run_checkpoint(run_dir, action="resume")
    saved = {"model": ckpt["model_config"], "data": ckpt["data_config"], "train": ckpt["train_config"]}
    if exp is None:
        exp = experiment_from_dict(merge(saved, parse_overrides(overrides or [])))
    exp = Experiment(fill_from_data(exp.model, saved["model"]), exp.data, exp.train)  # sizes it was built with
    return exp, Resumed(run_dir, ckpt, saved)


def check_same_configs(exp: Experiment, resumed: Resumed) -> None:
    """Refuse to continue a run with another model or data config (its data in a new place is no change)."""
    now = exp.to_dict()
    old_data, new_data = resumed.saved["data"], now["data"]
    if resumed.ckpt.get("data_files") is not None:  # a new place for the same files is no change: the fingerprints say
        old_data, new_data = without_locations(old_data), without_locations(new_data)
    else:  # a run saved with paths as typed: they meant the folder it is resumed from
        old_data = resolved_data(old_data)
    diff = config_diff(resumed.saved["model"], now["model"], "model") + config_diff(old_data, new_data, "data")
    if diff:
        raise ConfigError(
            f"the checkpoint in {resumed.run_dir} was trained with another model or data config:\n  "
            + "\n  ".join(diff)
            + "\nresume with the run's own config (omit CONFIG) or start a new run"
        )


def check_something_to_do(trainer: Trainer, cfg, run_dir: Path) -> None:
    """Refuse a resume that would train nothing, before it rewrites the run's config or checkpoints.

    A run that reached its step budget (or stopped early) and wrote its summary is finished; one
    stopped between its last step and its summary may still be resumed to finish its evaluation.
    """
    finished = (run_dir / "summary.json").is_file()
    budget = (
        f"train.max_steps = {cfg.max_steps}"
        if cfg.max_steps
        else f"train.epochs = {cfg.epochs} ({trainer.total_steps:,} steps)"
    )
    if trainer.stopped_early and finished:
        raise ConfigError(
            f"nothing to do: {run_dir} stopped early at step {trainer.step:,} (no improvement in "
            f"validation); the run is left as it was; start a new run to train further"
        )
    if trainer.step > trainer.total_steps or (trainer.step == trainer.total_steps and finished):
        raise ConfigError(
            f"nothing to do: {run_dir} has trained {trainer.step:,} steps and {budget} asks for no "
            f"more; the run is left as it was; give a larger --train.max_steps to train on"
        )


def check_position_kept(trainer: Trainer, saved: dict[str, Any], now: dict[str, Any], run_dir: Path) -> None:
    """Refuse, mid-epoch, a change of a setting the saved data position is counted in: the epoch's batches
    would be cut and ordered anew, and the rest of it would skip or repeat examples (a TBPTT run's carried
    state would not even fit). At an epoch's end every train setting may change."""
    if trainer.batch_in_epoch == 0:
        return
    keys = ("batch_size", "tbptt_steps") if trainer.stream else ("batch_size", "seed", "bucket")
    changed = [
        f"train.{k} (checkpoint {saved[k]!r}, now {now[k]!r})" for k in keys if k in saved and saved[k] != now[k]
    ]
    if changed:
        raise ConfigError(
            f"cannot resume {run_dir} with a new {' and '.join(changed)}: it stopped "
            f"{trainer.batch_in_epoch:,} batches into epoch {trainer.epoch + 1}, a position counted in the "
            f"checkpoint's batches, so the rest of the epoch would skip or repeat examples; resume with the "
            f"checkpoint's value; the run is left as it was"
        )


# -- 2. the data -----------------------------------------------------------------------------------


def run_data(exp: Experiment, resumed: Resumed | None, notify: Callable[[str], None]) -> tuple[Experiment, Splits]:
    """The splits, and ``exp`` with the model sizes it leaves to the data filled in and checked against them.

    A resumed run must read the data files it was trained on (same fingerprints).
    """
    splits = build_run_data(exp.data, resumed.run_dir) if resumed is not None else build_splits(exp.data)
    exp = Experiment(fill_from_data(exp.model, splits.info), exp.data, exp.train)
    check_shapes(exp, splits.info)
    if resumed is not None:
        changes = data_file_changes(resumed.ckpt.get("data_files"), splits.info.get("files", {}))
        if changes:
            raise ConfigError(
                f"cannot resume {resumed.run_dir}: "
                + "; ".join(changes)
                + "; resume with the data it was trained on, or start a new run"
            )
    is_main = int(os.environ.get("RANK", "0")) == 0
    for message in splits.info.get("messages", []) if is_main else []:
        notify(message)  # what the data layer filled or skipped, said once
    return exp, splits


# -- 3. the fit ------------------------------------------------------------------------------------


def fit_run(
    exp: Experiment,
    splits: Splits,
    resumed: Resumed | None,
    out: str | Path,
    run_name: str | None,
    argv: list[str] | None,
    progress: bool,
    callbacks: dict[str, list[Callable[[Trainer], None]]] | None,
    notify: Callable[[str], None],
) -> tuple[Trainer, dict[str, Any], dict[str, float], Path | None]:
    """Build the model and trainer, write the run's config and command line, fit, evaluate on the test split.

    Returns (trainer, what ``fit`` returned, test metrics, run directory: None on torchrun ranks > 0).
    Every process leaves the process group together, also when training stops early.
    """
    task = Task(splits.info.get("task", Task.CLASSIFICATION))
    files = splits.info.get("files", {})
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
        name = run_name or f"{exp.data.name}-{exp.model.name}"
        run_dir = resumed.run_dir if resumed is not None else new_run_dir(out, name)
    configs = exp.to_dict()
    try:
        trainer = Trainer(
            model,
            exp.train,
            splits.train,
            splits.val,
            task=task,
            run_dir=run_dir,
            progress=progress,
            dist_info=dist_info,
            device=device,
            checkpoint_extra=lambda: {
                "model_config": configs["model"],
                "data_config": configs["data"],
                "train_config": configs["train"],
                "task": task.value,
                "data_files": files,
                "vocabularies": vocabularies_record(splits.info),  # decoding needs no data: see runs.store
            },
        )
        for event, fns in (callbacks or {}).items():
            for fn in fns:
                trainer.add_callback(event, fn)
        if resumed is not None:
            continue_from(trainer, resumed, configs, notify if dist_info.is_main else None)
        if run_dir is not None:  # nothing is written before every check has passed
            write_run_files(run_dir, configs, argv, resumed is not None)
        fit = trainer.fit()
        test = (
            {}
            if len(splits.test) == 0
            # e.g. a 90/10 train/val split: nothing held out for test
            else evaluate(trainer.model, splits.test, task=task, device=trainer.device, dist_info=dist_info)
        )
    except (TrainingInterrupted, NonFiniteLoss):
        # Every process stops at the same step (the decision was all-reduced), so they leave together:
        # DDP's wrapper is let go and the group torn down while every peer is still there. Tearing down
        # without waiting (as after an error only this process saw) left rank 0 hanging at exit, now and
        # then, in the destructors of what the exception's frames held.
        trainer.release_distributed()
        shutdown(wait=True)
        raise
    except BaseException:
        shutdown(wait=False)
        raise
    # The same on success: a DDP wrapper still held after the group is torn down is destroyed later, when
    # this function's caller lets the trainer go, and by then a peer may have exited. CI saw rank 1 hang
    # there, past its caller's last line, after rank 0 had finished and left.
    trainer.release_distributed()
    shutdown()
    return trainer, fit, test, run_dir


def continue_from(
    trainer: Trainer, resumed: Resumed, configs: dict[str, Any], notify: Callable[[str], None] | None
) -> None:
    """Load the run's last checkpoint into ``trainer``, refuse a resume with nothing to do, and say (through
    ``notify``, None on ranks > 0) which train settings changed and where the data now is."""
    ckpt, saved = resumed.ckpt, resumed.saved
    trainer.load_state_dict(ckpt, resumed.run_dir / "checkpoints" / "last.pt")
    check_something_to_do(trainer, trainer.cfg, resumed.run_dir)
    check_position_kept(trainer, saved["train"], configs["train"], resumed.run_dir)
    if notify is None:
        return
    changed = config_diff(saved["train"], configs["train"], "train")
    if changed:
        notify(f"resuming {resumed.run_dir} at step {ckpt['step']} with changed settings:\n  " + "\n  ".join(changed))
    moved = [
        f"data.{k}: {saved['data'].get(k)!r} -> {configs['data'][k]!r}"
        for k in LOCATION_KEYS
        if k in configs["data"] and saved["data"].get(k) != configs["data"][k]
    ]
    if moved and ckpt.get("data_files") is not None:
        notify(f"resuming {resumed.run_dir} with its data in a new place (same content): " + "; ".join(moved))


def write_run_files(run_dir: Path, configs: dict[str, Any], argv: list[str] | None, resumed: bool) -> None:
    """``config.toml`` (the resolved config) and ``command.txt`` (every command line that trained the run)."""
    atomic_write_text(run_dir / "config.toml", dump_toml(configs))
    previous = (run_dir / "command.txt").read_text("utf-8") if resumed and (run_dir / "command.txt").is_file() else ""
    args = sys.argv[1:] if argv is None else argv
    atomic_write_text(run_dir / "command.txt", previous + shlex.join(["seqlab", *args]) + "\n")


# -- 4. the summary --------------------------------------------------------------------------------


def run_summary(
    exp: Experiment, splits: Splits, trainer: Trainer, fit: dict[str, Any], test: dict[str, float], run_dir: Path
) -> dict[str, Any]:
    """``summary.json``'s content: test (and, for a series, val) metrics, baselines, the fit's numbers, and for
    seq2seq the decoded test split's exact match, BLEU and chrF (its outputs in ``predictions.tsv``)."""
    task = Task(splits.info.get("task", Task.CLASSIFICATION))
    parts = {"test": test}
    if "inverse" in splits.info and len(splits.val):  # a series: the val error too, in the units of the baseline
        parts["val"] = evaluate(trainer.model, splits.val, task=task, device=trainer.device)
    scored = {
        k: v
        for part, metrics in parts.items()
        if metrics
        for k, v in split_metrics(trainer.model, splits, part, task, metrics, trainer.device).items()
    }
    baseline = {f"baseline/{k}": v for k, v in splits.info.get("baseline", {}).items() if isinstance(v, (int, float))}
    best_key = f"best_val/{trainer.metric}"
    if "inverse" in splits.info and trainer.metric == "loss":
        best_key += "_normalised"  # the validation loss the trainer tracks is on the normalised scale
    summary = {**scored, **baseline}
    if "inverse" in splits.info:
        summary["units"] = splits.info.get("units") or "the series' own units"
        summary["data/missing_values_filled"] = splits.info.get("filled", 0)
    summary.update(
        {
            "params": count_parameters(trainer.model),
            "steps": fit["steps"],
            "epochs": fit["epochs"],
            "precision": trainer.precision,
            "seconds": round(fit["seconds"], 3),
            best_key: fit[f"best_val/{trainer.metric}"],
            "stopped_early": fit["stopped_early"],
            "task": task.value,
            "model": exp.model.name,
            "data": exp.data.name,
            "processes": trainer.dist.world_size,
            "data_files": splits.info.get("files", {}),
        }
    )
    if task == Task.SEQ2SEQ and len(splits.test):  # greedy outputs of the test split: exact match, BLEU, chrF
        scores = seq2seq_scores(
            trainer.model, splits.test, splits.info, device=trainer.device, predictions=run_dir / "predictions.tsv"
        )
        # Numbers under test/ (seqlab runs tabulates them); the texts saying how BLEU and chrF were computed apart.
        summary["sacrebleu_signatures"] = {f"test/{m}": scores.pop(f"{m}_signature") for m in ("bleu", "chrf")}
        summary.update({f"test/{k}": v for k, v in scores.items()})
    return summary

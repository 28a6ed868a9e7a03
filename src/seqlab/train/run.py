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
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, dump_toml, from_dict, merge, parse_overrides, to_dict, toml_value
from ..data import DATASETS, LOCATION_KEYS, DataError, Splits, build_splits, resolve_locations
from ..models import build_model
from ..task import Task
from ..utils import atomic_write_text, count_parameters, eval_mode, set_seed
from .checkpoint import CheckpointError, load_checkpoint
from .config import Experiment, experiment_from_dict
from .contracts import ChecksData, ContextWindow, FixedInputShape, TokenIds
from .distributed import init_distributed, resolve_device, shutdown
from .likelihood import sequence_log_likelihood, unigram_probs
from .metrics import evaluate
from .seq2seq_metrics import seq2seq_scores
from .trainer import NonFiniteLoss, Trainer, TrainingInterrupted, check_trainable


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


# Model sizes that 0 means: take the data's.
FROM_DATA = (
    "input_size",
    "num_classes",
    "vocab_size",
    "src_vocab_size",
    "tgt_vocab_size",
    "max_src_len",
    "max_tgt_len",
)


def fill_from_data(model_cfg, values: dict[str, Any]):
    """``model_cfg`` with each of its FROM_DATA sizes that is 0 set from ``values`` (the data's info,
    or a checkpoint's model config); sizes set by the user are left for ``check_shapes`` to compare."""
    given = {k: values[k] for k in FROM_DATA if getattr(model_cfg, k, None) == 0 and k in values}
    if getattr(model_cfg, "init", None) == "chrono" and model_cfg.chrono_max == 0:  # T_max: the data's length
        T = values.get("chrono_max") or values.get("seq_len") or values.get("max_src_len")
        given.update({"chrono_max": T} if T else {})
    return dataclasses.replace(model_cfg, **given) if given else model_cfg


def check_shapes(exp: Experiment, info: dict[str, Any]) -> None:
    """The model's declared input size, classes, vocabulary and window length must match what the data gives.

    A model config whose examples have a fixed shape (a ViT's images: ``contracts.FixedInputShape``)
    exposes it as ``input_shape`` (no batch dim), compared with the data's ``info["input_shape"]``;
    its ``settings_for_input(shape)`` names the keys to set.
    """
    for key in ("input_size", "num_classes", "vocab_size", "tau"):
        if key in info and hasattr(exp.model, key) and getattr(exp.model, key) != info[key]:
            fix = f"set --model.{key}={info[key]}"
            if key in FROM_DATA:
                fix += " (or 0 to take it from the data)"
            raise ConfigError(
                f"model.{key} = {getattr(exp.model, key)} but data '{exp.data.name}' gives {info[key]}; {fix}"
            )
    if getattr(exp.model, "init", None) == "chrono" and exp.model.chrono_max == 0:
        raise ConfigError(
            f"model.init = 'chrono' needs model.chrono_max (T_max) and data '{exp.data.name}' gives no sequence "
            "length; set --model.chrono_max=T (the longest dependency to remember)"
        )
    if isinstance(exp.model, ChecksData):  # the model's own checks (seq2seq: vocabularies, special ids, lengths)
        exp.model.check_data(info)
    block = exp.model.block_size if isinstance(exp.model, ContextWindow) else None
    if block is not None and info.get("seq_len", 0) > block:
        raise ConfigError(
            f"data.seq_len = {info['seq_len']} but model '{exp.model.name}' reads at most "
            f"model.block_size = {block} tokens; set --data.seq_len={block} "
            f"or --model.block_size={info['seq_len']}"
        )
    given = info.get("input_shape")
    if isinstance(exp.model, FixedInputShape) and given is not None and tuple(exp.model.input_shape) != tuple(given):
        expected, given = exp.model.input_shape, tuple(given)
        fix = exp.model.settings_for_input(given)
        now = ", ".join(f"model.{k} = {toml_value(getattr(exp.model, k))}" for k in fix)
        message = (
            f"model '{exp.model.name}' reads examples of shape {tuple(expected)}"
            + (f" ({now})" if now else "")
            + f" but data '{exp.data.name}' gives {given}; "
        )
        if fix:
            message += "set " + " ".join(f"--model.{k}={toml_value(v).replace(' ', '')}" for k, v in fix.items())
        else:
            message += "no model setting reads that shape: choose another data view or model"
        raise ConfigError(message)


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


def _without_locations(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in LOCATION_KEYS}


def _resolved_data(data: dict[str, Any]) -> dict[str, Any]:
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


@torch.no_grad()
def original_units_errors(
    model: torch.nn.Module, dataset, inverse: Callable, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    """MSE and RMSE of a series model's predictions in the series' own units: the model's output and
    the targets mapped back by ``inverse`` (the scaler fitted on the training part), then compared."""
    x, y = dataset.tensors  # (N, tau, 1), (N, 1), normalised
    squared = 0.0
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            y_hat = model(x[i : i + batch_size].to(device))[0]  # (b, 1)
            err = inverse(y_hat.double().cpu()) - inverse(y[i : i + batch_size].double())  # (b, 1), original units
            squared += float((err**2).sum())
    mse = squared / y.numel()
    return {"mse_original_units": mse, "rmse_original_units": mse**0.5}


def split_metrics(
    model: torch.nn.Module, splits: Splits, split: str, task: str, metrics: dict[str, float], device: torch.device
) -> dict[str, float]:
    """``split/<metric>`` keys; for a series, the normalised loss named so and MSE, RMSE in original units."""
    if "inverse" not in splits.info:
        return {f"{split}/{k}": v for k, v in metrics.items()}
    out = original_units_errors(model, getattr(splits, split), splits.info["inverse"], device)
    out.update({("loss_normalised" if k == "loss" else k): v for k, v in metrics.items()})
    return {f"{split}/{k}": v for k, v in out.items()}


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
    ckpt, saved = None, None
    if resume is not None:
        resume = Path(resume)
        ckpt = read_run_checkpoint(resume, action="resume")
        saved = {"model": ckpt["model_config"], "data": ckpt["data_config"], "train": ckpt["train_config"]}
        if exp is None:
            exp = experiment_from_dict(merge(saved, parse_overrides(overrides or [])))
        exp = Experiment(fill_from_data(exp.model, saved["model"]), exp.data, exp.train)  # sizes it was built with
    assert exp is not None
    exp = Experiment(exp.model, resolve_locations(exp.data), exp.train)  # absolute: the run works from any folder
    if ckpt is not None:
        now = exp.to_dict()
        old_data, new_data = saved["data"], now["data"]
        if ckpt.get("data_files") is not None:  # a new place for the same files is no change: the fingerprints say
            old_data, new_data = _without_locations(old_data), _without_locations(new_data)
        else:  # a run saved with paths as typed: they meant the folder it is resumed from
            old_data = _resolved_data(old_data)
        diff = config_diff(saved["model"], now["model"], "model") + config_diff(old_data, new_data, "data")
        if diff:
            raise ConfigError(
                f"the checkpoint in {resume} was trained with another model or data config:\n  "
                + "\n  ".join(diff)
                + "\nresume with the run's own config (omit CONFIG) or start a new run"
            )
    set_seed(exp.train.seed)
    splits = build_run_data(exp.data, resume) if resume is not None else build_splits(exp.data)
    exp = Experiment(fill_from_data(exp.model, splits.info), exp.data, exp.train)
    check_shapes(exp, splits.info)
    files = splits.info.get("files", {})
    if ckpt is not None:
        changes = data_file_changes(ckpt.get("data_files"), files)
        if changes:
            raise ConfigError(
                f"cannot resume {resume}: "
                + "; ".join(changes)
                + "; resume with the data it was trained on, or start a new run"
            )
    is_main = int(os.environ.get("RANK", "0")) == 0
    for message in splits.info.get("messages", []) if is_main else []:
        notify(message)  # what the data layer filled or skipped, said once
    task = Task(splits.info.get("task", Task.CLASSIFICATION))
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
            },
        )
        for event, fns in (callbacks or {}).items():
            for fn in fns:
                trainer.add_callback(event, fn)
        if ckpt is not None:
            trainer.load_state_dict(ckpt, resume / "checkpoints" / "last.pt")
            check_something_to_do(trainer, exp.train, resume)
            changed = config_diff(saved["train"], configs["train"], "train")
            if changed and dist_info.is_main:
                notify(f"resuming {resume} at step {ckpt['step']} with changed settings:\n  " + "\n  ".join(changed))
            moved = [
                f"data.{k}: {saved['data'].get(k)!r} -> {configs['data'][k]!r}"
                for k in LOCATION_KEYS
                if k in configs["data"] and saved["data"].get(k) != configs["data"][k]
            ]
            if moved and ckpt.get("data_files") is not None and dist_info.is_main:
                notify(f"resuming {resume} with its data in a new place (same content): " + "; ".join(moved))
        if run_dir is not None:  # nothing is written before every check has passed
            atomic_write_text(run_dir / "config.toml", dump_toml(configs))
            previous = (run_dir / "command.txt").read_text() if resume and (run_dir / "command.txt").is_file() else ""
            args = sys.argv[1:] if argv is None else argv
            atomic_write_text(run_dir / "command.txt", previous + shlex.join(["seqlab", *args]) + "\n")
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
    shutdown()
    if run_dir is None:
        return None
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
            "params": count_parameters(model),
            "steps": fit["steps"],
            "epochs": fit["epochs"],
            "precision": trainer.precision,
            "seconds": round(fit["seconds"], 3),
            best_key: fit[f"best_val/{trainer.metric}"],
            "stopped_early": fit["stopped_early"],
            "task": task.value,
            "model": exp.model.name,
            "data": exp.data.name,
            "processes": dist_info.world_size,
            "data_files": files,
        }
    )
    if task == Task.SEQ2SEQ and len(splits.test):  # greedy outputs of the test split: exact match, BLEU, chrF
        scores = seq2seq_scores(
            trainer.model, splits.test, splits.info, device=trainer.device, predictions=run_dir / "predictions.tsv"
        )
        # Numbers under test/ (seqlab runs tabulates them); the texts saying how BLEU and chrF were computed apart.
        summary["sacrebleu_signatures"] = {f"test/{m}": scores.pop(f"{m}_signature") for m in ("bleu", "chrf")}
        summary.update({f"test/{k}": v for k, v in scores.items()})
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return run_dir


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


def read_run_checkpoint(run_dir: str | Path, checkpoint: str = "last.pt", action: str = "load") -> dict[str, Any]:
    """``RUN_DIR/checkpoints/<checkpoint>``; a missing directory or file or a bad checkpoint is a ConfigError
    (``action``, e.g. "resume", says what there is nothing to do when the run has no checkpoint yet)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory not found: {run_dir}")
    ckpt_path = run_dir / "checkpoints" / checkpoint
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


def load_run(
    run_dir: str | Path, checkpoint: str = "last.pt", data_location: dict[str, str] | None = None, action: str = "load"
) -> tuple[Experiment, torch.nn.Module, dict]:
    """The experiment and trained model of a run directory, rebuilt from the checkpoint's configs.

    ``data_location`` (e.g. ``{"path": "/new/place/input.txt"}``) points the data config at where
    the run's data is now; only the keys in ``LOCATION_KEYS`` may be given.
    """
    ckpt = read_run_checkpoint(run_dir, checkpoint, action)
    other = sorted(set(data_location or {}) - set(LOCATION_KEYS))
    if other:
        raise ConfigError(
            f"only the data's location can be given for an existing run (--data.path, --data.root), "
            f"not --data.{other[0]}: its data config is the one it was trained with"
        )
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


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    checkpoint: str = "last.pt",
    data_location: dict[str, str] | None = None,
    notify: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
    beam: int = 1,
    length_penalty: float = 0.6,
) -> dict[str, float]:
    """Metrics of a trained run on one split of its data, rebuilt exactly as in training.

    A seq2seq run's outputs are greedy, or beam search of width ``beam`` (ranked by
    log P / ((5 + |Y|) / 6) ** length_penalty); predictions and scores files name the beam.

    For a language model, also the chain rule over the split's whole text read as one stream
    (``train.likelihood``): log_likelihood, tokens, nll_per_token, perplexity, bits_per_char.
    The first character, which the model cannot predict, is scored by the training part's
    add-one-smoothed unigram frequency. For a series, the normalised loss is ``loss_normalised``
    and the MSE and RMSE in the series' units are added. A data file that is not the one the run
    was trained on is reported through ``notify`` (one line each), and the evaluation goes on.
    """
    exp, model, ckpt = load_run(run_dir, checkpoint, data_location, action="evaluate")
    exp = Experiment(exp.model, resolve_locations(exp.data), exp.train)
    splits = build_run_data(exp.data, Path(run_dir))
    for line in data_file_changes(ckpt.get("data_files"), splits.info.get("files", {})):
        notify(line)
    try:
        check_shapes(exp, splits.info)
    except ConfigError as err:  # the model is fixed now: only the data can be wrong
        raise ConfigError(f"{run_dir} was trained on other data: {str(err).split('; ')[0]}") from None
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; expected train, val or test")
    device = resolve_device(exp.train.device)
    start = time.perf_counter()
    dataset = getattr(splits, split)
    if len(dataset) == 0:
        raise ConfigError(
            f"the {split} split of {run_dir} is empty (its data config holds nothing out for it); "
            f"evaluate another split, e.g. --split val"
        )
    task = Task(ckpt.get("task", Task.CLASSIFICATION))
    if beam != 1 and task != Task.SEQ2SEQ:
        raise ConfigError(
            f"--beam applies to seq2seq runs (exact match, BLEU, chrF of decoded outputs); {run_dir} is a {task} run"
        )
    metrics = evaluate(model.to(device), dataset, task=task, device=device)
    if task == Task.SEQ2SEQ:  # greedy outputs: exact match, token accuracy, BLEU, chrF; the outputs in RUN_DIR
        suffix = ("" if split == "test" else f"-{split}") + (f"-beam{beam}" if beam > 1 else "")
        scores = seq2seq_scores(
            model,
            dataset,
            splits.info,
            device=device,
            predictions=Path(run_dir) / f"predictions{suffix}.tsv",
            beam=beam,
            length_penalty=length_penalty,
        )
        if beam > 1:
            scores.update(beam=beam, length_penalty=length_penalty)
        atomic_write_text(
            Path(run_dir) / f"scores{suffix}.json",
            json.dumps({f"{split}/{k}": v for k, v in scores.items()}, indent=2) + "\n",
        )
        metrics.update(scores)
    if task == Task.LANGUAGE_MODEL and isinstance(dataset, TokenIds):
        # The whole part as one stream: log P(x_1..x_T) by the chain rule, bits per character.
        first = unigram_probs(splits.train.ids, splits.info["vocab_size"])  # P(x_1): the model has no BOS
        # A window model (a GPT) reads at most block_size tokens: strided windows instead of one stream.
        context = exp.model.block_size if isinstance(exp.model, ContextWindow) else None
        metrics.update(sequence_log_likelihood(model, dataset.ids, first_probs=first, device=device, context=context))
    return {**split_metrics(model, splits, split, task, metrics, device), "seconds": time.perf_counter() - start}


def _read_summary(path: Path, warn: Callable[[str], None]) -> dict[str, Any] | None:
    """A run's summary.json as a dict, or None after one line through ``warn`` naming the damaged file."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        problem = f"cannot be read ({err})"
    except json.JSONDecodeError as err:
        problem = f"is not valid JSON ({err})"
    else:
        if not isinstance(summary, dict):
            problem = f"holds {'null' if summary is None else type(summary).__name__}, not a JSON object"
        else:
            numbers = ("params", "seconds", "test/", "best_val/")  # the table formats these as numbers
            wrong = next(
                (
                    k
                    for k, v in summary.items()
                    if k.startswith(numbers) and v is not None and not isinstance(v, (int, float))
                ),
                None,
            )
            if wrong is None:
                return summary
            problem = f"has a non-number {wrong}: {summary[wrong]!r}"
    warn(f"skipped {path}: it {problem}")
    return None


def _last_step(metrics: Path) -> int:
    """The step of the last readable line of metrics.jsonl (a killed run may leave half a line)."""
    for line in reversed(metrics.read_text(errors="replace").splitlines()):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, TypeError, KeyError):
            continue
    return 0


def runs_table(
    root: str | Path = "runs", warn: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
) -> str:
    """A text table of the run directories under ``root`` (finished or not), oldest first.

    A damaged summary.json (not JSON, not an object, a number that is not one) leaves its run out,
    with one line through ``warn`` naming the file; the other runs are listed.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"runs folder not found: {root}")
    rows = [("name", "task", "model", "params", "steps", "best val", "test", "baseline", "seconds")]
    for run in sorted(p for p in root.iterdir() if (p / "config.toml").is_file()):
        summary_path = run / "summary.json"
        if summary_path.is_file():
            s = _read_summary(summary_path, warn)
            if s is None:
                continue
            best = next(((k[len("best_val/") :], v) for k, v in s.items() if k.startswith("best_val/")), None)
            test = next(
                ((k[len("test/") :], v) for k, v in s.items() if k.startswith("test/") and k != "test/loss"),
                ("loss", s.get("test/loss")),
            )
            baselines = [
                (k[len("baseline/") :], v)
                for k, v in s.items()
                if k.startswith("baseline/") and isinstance(v, (int, float))
            ]
            base = next((kv for kv in baselines if kv[0].endswith("_test")), baselines[0] if baselines else None)
            fmt = lambda kv: f"{kv[0]} {kv[1]:.4f}" if kv and kv[1] is not None else "-"  # noqa: E731
            rows.append(
                (
                    run.name,
                    s.get("task", "-"),
                    s.get("model", "-"),
                    f"{s.get('params', 0):,}",
                    str(s.get("steps", "-")),
                    fmt(best),
                    fmt(test),
                    fmt(base),
                    f"{s.get('seconds', 0):.1f}",
                )
            )
        else:
            steps = "-"
            metrics = run / "metrics.jsonl"
            if metrics.is_file():
                steps = _last_step(metrics)
            rows.append((run.name, "-", "-", "-", f"{steps} (unfinished)", "-", "-", "-", "-"))
    if len(rows) == 1:
        return f"no runs in {root}"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

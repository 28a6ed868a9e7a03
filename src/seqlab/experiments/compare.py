"""``seqlab compare``: model families trained on one task, one dataset and one step budget, side by side.

A family is mapped onto the models of the data's task (``info["task"]``):

===================  ============================  ==========================================
task                 rnn, lstm, gru (``cell=``)    transformer
===================  ============================  ==========================================
classification       rnn_classifier                vit, one token per row (patches 1 x W)
sequence_labeling    rnn_classifier (per_step)     none
regression           rnn_forecaster                transformer_forecaster (tau = window length)
language_model       rnn_lm                        gpt (block_size = the data's seq_len)
seq2seq              seq2seq_rnn (lstm, gru only)  seq2seq_transformer
===================  ============================  ==========================================

The config's own ``[model]`` is kept for the family it belongs to (its ``cell`` replaced for rnn,
lstm and gru); a family whose model the config does not give gets that model's small default
(``DEFAULTS``). Only the width then differs between the config and a family's model:
``hidden_size`` for a recurrent model, ``d_model`` for a Transformer (``d_ff`` kept in the same
ratio to it). With ``match="params"`` each family after the first gets the width whose parameter
count is nearest the first family's (a bisection: the count grows with the width); with
``match="hidden"`` every family gets the first family's width.

Every (family, seed) is an ordinary run directory, ``OUT/runs/<family>-seed<s>-<time>/``, trained
by ``train_experiment`` with ``train.seed = s``; the data (and its split) is the same for all. A
rerun skips a finished run (it has ``summary.json``), resumes an unfinished one from
``checkpoints/last.pt``, and refuses a run whose ``config.toml`` is not the one planned now (a
changed budget or size belongs in another ``--out``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, from_dict, load_toml, to_dict
from ..data import build_splits, resolve_locations
from ..models import MODELS, build_model
from ..runs import config_diff, fill_from_data, train_experiment
from ..task import Task
from ..train.config import Experiment
from ..utils import count_parameters

FAMILIES = ("rnn", "lstm", "gru", "transformer")
MATCHES = ("params", "hidden")

# task -> (the recurrent model of rnn/lstm/gru, the transformer family's model or None)
TASK_MODELS: dict[Task, tuple[str, str | None]] = {
    Task.CLASSIFICATION: ("rnn_classifier", "vit"),
    Task.SEQUENCE_LABELING: ("rnn_classifier", None),
    Task.REGRESSION: ("rnn_forecaster", "transformer_forecaster"),
    Task.LANGUAGE_MODEL: ("rnn_lm", "gpt"),
    Task.SEQ2SEQ: ("seq2seq_rnn", "seq2seq_transformer"),
}

# Small sizes for a family's model when the config gives another model (the data's sizes are added).
DEFAULTS: dict[str, dict[str, Any]] = {
    "rnn_classifier": {"hidden_size": 128},
    "rnn_forecaster": {"hidden_size": 64},
    "rnn_lm": {},
    "seq2seq_rnn": {},
    "vit": {"d_model": 64, "depth": 2, "num_heads": 4, "d_ff": 128, "dropout": 0.0},
    "transformer_forecaster": {"d_model": 32, "num_heads": 4, "d_ff": 64, "num_layers": 2},
    "gpt": {"d_model": 64, "num_heads": 4, "num_layers": 2, "dropout": 0.0},
    "seq2seq_transformer": {},
}

# The summary key reported per task: the first one every run has.
METRIC_KEYS: dict[Task, tuple[str, ...]] = {
    Task.CLASSIFICATION: ("test/accuracy", "best_val/accuracy"),
    Task.SEQUENCE_LABELING: ("test/accuracy", "best_val/accuracy"),
    Task.REGRESSION: ("test/mse_original_units", "test/loss", "best_val/loss_normalised", "best_val/loss"),
    Task.LANGUAGE_MODEL: ("test/loss", "best_val/loss"),
    Task.SEQ2SEQ: ("test/bleu", "test/loss", "best_val/loss"),
}
MATCH_TOLERANCE = 0.10  # a matched parameter count further than this from the first family's is reported


@dataclasses.dataclass(frozen=True)
class Member:
    """One family's model: its config (sizes filled from the data), what its width is and its parameters."""

    family: str
    model: Any
    width_key: str  # "hidden_size" or "d_model"
    params: int

    @property
    def width(self) -> int:
        return getattr(self.model, self.width_key)

    def describe(self) -> str:
        cell = f" (cell {self.model.cell})" if hasattr(self.model, "cell") else ""
        return f"{self.model.name}{cell}"


@dataclasses.dataclass(frozen=True)
class ComparePlan:
    members: tuple[Member, ...]
    data: Any  # data config, locations absolute
    train: Any  # TrainConfig; each run replaces its seed
    seeds: tuple[int, ...]
    task: Task
    match: str
    baseline: tuple[tuple[str, Any], ...] = ()  # the data's baseline entries (a closed-form floor)

    def experiment(self, member: Member, seed: int) -> Experiment:
        return Experiment(member.model, self.data, dataclasses.replace(self.train, seed=seed))

    def budget(self) -> str:
        n = self.train.max_steps or self.train.epochs
        unit = "optimiser step" if self.train.max_steps else "epoch"
        return f"{n:,} {unit}{'s' if n != 1 else ''} of {self.train.batch_size} examples per run"


def parse_families(text: str) -> tuple[str, ...]:
    families = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ConfigError(f"unknown model family {unknown[0]!r} in --models; families: {', '.join(FAMILIES)}")
    if not families:
        raise ConfigError(f"--models names no family; give some of: {', '.join(FAMILIES)}")
    if len(set(families)) != len(families):
        raise ConfigError(f"--models names a family twice: {text!r}")
    return families


def count_params(model_cfg) -> int:
    """Trainable parameters of the model ``model_cfg`` describes, built without memory on the meta device."""
    try:
        with torch.device("meta"):
            return count_parameters(build_model(model_cfg))
    except (NotImplementedError, RuntimeError):  # a model whose constructor computes on its tensors
        return count_parameters(build_model(model_cfg))


def default_model(name: str, task: Task, info: dict[str, Any]):
    """Model ``name`` at its ``DEFAULTS`` sizes, shaped for the data that ``info`` describes."""
    values = dict(DEFAULTS[name])
    if name == "rnn_classifier":
        values.update(
            input_size=info["input_size"], num_classes=info["num_classes"], per_step=task == Task.SEQUENCE_LABELING
        )
    elif name == "rnn_forecaster":
        values.update(input_size=info["input_size"], output_size=info.get("output_size", 1))
    elif name == "transformer_forecaster":
        values.update(
            tau=info.get("tau", info["seq_len"]), input_size=info["input_size"], output_size=info.get("output_size", 1)
        )
    elif name == "gpt":
        values.update(block_size=info["seq_len"])
    elif name == "vit":
        shape = tuple(info.get("input_shape", ()))
        if len(shape) not in (2, 3):
            raise ConfigError(
                f"the transformer family reads rows of an image-like input, but this data gives "
                f"examples of shape {shape}"
            )
        channels, (H, W) = (1, shape) if len(shape) == 2 else (shape[0], shape[1:])
        # One token per row, as the recurrent models read it: patches of 1 x W (a ViT over the rows).
        values.update(image_size=[H, W], patch_size=[1, W], channels=channels, num_classes=info["num_classes"])
    return from_dict(MODELS[name][0], {**values, "name": name}, "model")


def family_model(family: str, base, task: Task, info: dict[str, Any]):
    """The model config of ``family`` for this task: the config's own ``base`` where it is that model."""
    recurrent, transformer = TASK_MODELS[task]
    name = transformer if family == "transformer" else recurrent
    if name is None:
        raise ValueError("")
    cfg = base if base.name == name else default_model(name, task, info)
    if family != "transformer":
        try:
            cfg = dataclasses.replace(cfg, cell=family)
        except ValueError as err:
            if str(err).startswith("model.cell must be one of"):  # seq2seq_rnn: gru and lstm only
                raise ValueError(f"{name} takes no cell {family!r}") from None
            # The config's other settings do not fit this family's cell (model.init = 'chrono' and the rnn
            # family, which has no gate): the user's to change, not a family the task lacks.
            raise FamilyConflict(
                f"the {family} family ({name} with cell {family!r}): {err}; or leave it out with --models"
            ) from None
    return fill_from_data(cfg, info)


class FamilyConflict(ConfigError):
    """A setting of the config that one family's model cannot take."""


def _width_key(cfg) -> str:
    return "d_model" if hasattr(cfg, "d_model") else "hidden_size"


def _width_unit(cfg) -> int:
    """The step between valid widths: heads divide d_model (rotary: into even halves); a
    bidirectional seq2seq encoder halves hidden_size."""
    if hasattr(cfg, "d_model"):
        return cfg.num_heads * (2 if getattr(cfg, "positions", "") == "rotary" else 1)
    return 2 if getattr(cfg, "bidirectional", False) and cfg.name == "seq2seq_rnn" else 1


def with_width(cfg, width: int):
    """``cfg`` with its width set to ``width``, a Transformer's d_ff kept in proportion (d_ff = 0 stays 0)."""
    key = _width_key(cfg)
    changes: dict[str, Any] = {key: width}
    if key == "d_model" and getattr(cfg, "d_ff", 0):
        changes["d_ff"] = max(1, round(cfg.d_ff * width / cfg.d_model))
    return dataclasses.replace(cfg, **changes)


def match_params(cfg, target: int, max_width: int = 8192) -> Any:
    """``cfg`` at the valid width whose parameter count is nearest ``target`` (counts grow with the width)."""
    unit = _width_unit(cfg)
    lo, hi = 1, max(1, max_width // unit)  # widths k * unit
    while lo < hi:  # the smallest k whose count reaches the target
        mid = (lo + hi) // 2
        if count_params(with_width(cfg, mid * unit)) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [with_width(cfg, k * unit) for k in {lo, max(1, lo - 1)}]
    return min(candidates, key=lambda c: (abs(count_params(c) - target), _width_key(c)))


def plan_compare(
    exp: Experiment,
    families: tuple[str, ...],
    *,
    seeds: int = 3,
    match: str = "params",
    budget_steps: int | None = None,
) -> ComparePlan:
    """Every family's model for ``exp``'s data, sized by ``match``; the shared data and train settings."""
    if match not in MATCHES:
        raise ConfigError(f"--match must be one of {', '.join(MATCHES)}, got {match!r}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if budget_steps is not None and budget_steps < 1:
        raise ConfigError(f"--budget-steps must be >= 1, got {budget_steps}")
    data = resolve_locations(exp.data)
    info = build_splits(data).info
    task = Task(info.get("task", Task.CLASSIFICATION))
    if task not in TASK_MODELS:
        raise ConfigError(f"seqlab compare has no model families for {task} data")
    models, missing = {}, {}
    for family in FAMILIES:
        try:
            models[family] = family_model(family, exp.model, task, info)
        except ValueError as err:  # also ConfigError: a default that this data cannot shape
            missing[family] = err
    wanted_missing = [f for f in families if f in missing]
    if wanted_missing:
        family = wanted_missing[0]
        if isinstance(missing[family], FamilyConflict):
            raise missing[family]
        have = [f for f in FAMILIES if f in models]
        why = f" ({missing[family]})" if str(missing[family]) else ""
        raise ConfigError(
            f"model family {family!r} has no model for {task} data '{data.name}'{why}; "
            f"families that do: {', '.join(have) or 'none'}"
        )
    if "transformer" in families and exp.train.tbptt_steps:
        raise ConfigError(
            f"train.tbptt_steps = {exp.train.tbptt_steps} carries a recurrent state across chunks, "
            f"which the transformer family has not; give --train.tbptt_steps=0 to train every family "
            f"on windows of data.seq_len"
        )
    members: list[Member] = []
    for family in families:
        cfg = models[family]
        if members and match == "params":
            cfg = match_params(cfg, members[0].params)
        elif members:  # match == "hidden": the first family's width, rounded to a valid one
            unit = _width_unit(cfg)
            cfg = with_width(cfg, max(unit, round(members[0].width / unit) * unit))
        members.append(Member(family, cfg, _width_key(cfg), count_params(cfg)))
    train = exp.train if budget_steps is None else dataclasses.replace(exp.train, max_steps=budget_steps)
    baseline = tuple((k, v) for k, v in info.get("baseline", {}).items() if isinstance(v, (int, float, str)))
    return ComparePlan(
        tuple(members), data, train, tuple(exp.train.seed + i for i in range(seeds)), task, match, baseline
    )


def plan_lines(plan: ComparePlan) -> list[str]:
    """One line per family: model, width and parameter count (and how far from the first family's)."""
    first = plan.members[0]
    lines = []
    for m in plan.members:
        line = f"{m.family:<12} {m.describe():<28} {m.width_key + ' ' + str(m.width):<16} {m.params:>10,} params"
        if m is not first:
            off = m.params / first.params - 1
            line += f"  ({off:+.1%} vs {first.family})"
            if plan.match == "params" and abs(off) > MATCH_TOLERANCE:
                line += f"; no {m.width_key} comes within {MATCH_TOLERANCE:.0%}"
        lines.append(line)
    return lines


def _as_stored(section) -> dict[str, Any]:
    """A config section as a run's config.toml reads back (TOML has no None; tuples are lists)."""
    return {k: v for k, v in to_dict(section).items() if v is not None}


def find_run(runs_root: Path, name: str, exp: Experiment) -> tuple[Path | None, str]:
    """The run directory of ``name`` under ``runs_root`` and its state: "finished", "unfinished" or "new".

    A finished run (summary.json) is preferred, then the newest one with a checkpoint; a directory
    without a checkpoint (stopped before its first) is passed over. A chosen run whose config is
    not ``exp`` is a ConfigError naming the difference.
    """
    if not runs_root.is_dir():
        return None, "new"
    found = sorted(p for p in runs_root.glob(f"{name}-*") if (p / "config.toml").is_file())  # oldest first
    finished = [p for p in found if (p / "summary.json").is_file()]
    unfinished = [p for p in found if (p / "checkpoints" / "last.pt").is_file()]
    if finished:
        run, state = finished[-1], "finished"
    elif unfinished:
        run, state = unfinished[-1], "unfinished"
    else:
        run, state = None, "new"
    if run is not None:
        stored = load_toml(run / "config.toml")
        planned = {"model": exp.model, "data": exp.data, "train": exp.train}
        diff = [
            line.replace(": checkpoint ", ": run ")
            for section, cfg in planned.items()
            for line in config_diff(stored.get(section, {}), _as_stored(cfg), section)
        ]
        if diff:
            raise ConfigError(
                f"{run} was trained with another config than this compare plans ("
                + "; ".join(diff)
                + "); give another --out for a new comparison"
            )
    return run, state


@dataclasses.dataclass
class FamilyResult:
    member: Member
    runs: list[Path]
    summaries: list[dict[str, Any]]


@dataclasses.dataclass
class CompareResult:
    plan: ComparePlan
    families: list[FamilyResult]
    metric: str


def run_compare(
    plan: ComparePlan,
    out: str | Path,
    *,
    argv: list[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> CompareResult:
    """Train (or skip, or resume) every (family, seed) run under ``out/runs``; their summaries.

    An interruption (``TrainingInterrupted``) propagates with the runs so far kept: the same call
    again continues where it stopped.
    """
    runs_root = Path(out) / "runs"
    total = len(plan.members) * len(plan.seeds)
    families, i = [], 0
    for member in plan.members:
        result = FamilyResult(member, [], [])
        for seed in plan.seeds:
            i += 1
            name = f"{member.family}-seed{seed}"
            exp = plan.experiment(member, seed)
            run, state = find_run(runs_root, name, exp)
            if state == "finished":
                log(f"[{i}/{total}] {name}: finished earlier, kept: {run}")
            elif state == "unfinished":
                log(f"[{i}/{total}] {name}: resuming {run}")
                train_experiment(exp, out=runs_root, resume=run, argv=argv, progress=progress, notify=log)
            else:
                log(f"[{i}/{total}] {name}: training")
                run = train_experiment(exp, out=runs_root, run_name=name, argv=argv, progress=progress, notify=log)
            assert run is not None
            result.runs.append(run)
            result.summaries.append(json.loads((run / "summary.json").read_text()))
        families.append(result)
    return CompareResult(plan, families, metric_key(plan.task, [s for f in families for s in f.summaries]))


def metric_key(task: Task, summaries: list[dict[str, Any]]) -> str:
    """The first of the task's ``METRIC_KEYS`` that every summary has."""
    for key in METRIC_KEYS[task]:
        if all(isinstance(s.get(key), (int, float)) for s in summaries):
            return key
    return "best_val/" + next(k for k in summaries[0] if k.startswith("best_val/")).split("/", 1)[1]

"""The ``[train]`` section every preset shares, and the experiment that ties model, data and train together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, from_dict, load_toml, merge, parse_overrides, to_dict
from ..data import DATASETS
from ..models import MODELS

OPTIMIZERS = ("adamw", "sgd")
DECAY = ("all", "matrices")
SCHEDULES = ("constant", "cosine", "noam")
PRECISIONS = ("fp32", "bf16", "auto")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    batch_size: int = 64
    lr: float = 3e-3
    epochs: int = 10
    max_steps: int = 0  # > 0 stops after this many optimiser steps, whatever `epochs` says
    eval_every: int = 100  # optimiser steps between validations (0: at the end of each epoch only)
    log_every: int = 10
    layer_norms_every: int = 100  # log each parameter's gradient norm every N steps (0: never)
    tensorboard: bool = True  # also write TensorBoard event files in RUN_DIR/tensorboard
    checkpoint_every: int = 0  # steps between checkpoints/last.pt; 0: at each evaluation
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    decay: str = "all"  # which parameters weight_decay shrinks: "all", or "matrices" (GPT-2/nanoGPT: not biases, norms)
    momentum: float = 0.9  # SGD only
    beta1: float = 0.9  # AdamW's moment decay rates (torch's defaults; nanoGPT's character GPT: beta2 = 0.99)
    beta2: float = 0.999
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr: float = 0.0  # the cosine schedule ends here instead of at 0 (nanoGPT: lr / 10)
    grad_clip: float = 1.0  # global norm; 0 disables
    grad_accum: int = 1
    bucket: int = 0  # > 0: each batch from a pool of this many batches sorted by length (seq2seq: less padding)
    tbptt_steps: int = 0  # > 0: truncated BPTT over streams (stream tasks only)
    # "bf16": autocast to bfloat16; "auto": bf16 where the device computes it natively (a GPU with bf16, a CPU
    # with AVX-512 or AMX), else fp32, because an AVX2 CPU emulates bf16 many times slower than fp32.
    precision: str = "fp32"
    compile: bool | str = False  # true, false or "auto" (CUDA only: it did not pay on the CPU; train/compile.py)
    device: str = "auto"
    early_stopping_patience: int = 0  # evaluations without improvement before stopping; 0: never
    metric: str = ""  # validation metric for best.pt and early stopping; "" picks the task's default

    def __post_init__(self):
        for key, allowed in (
            ("optimizer", OPTIMIZERS),
            ("decay", DECAY),
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("device", DEVICES),
        ):
            if getattr(self, key) not in allowed:
                raise ValueError(f"train.{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ValueError(f'train.compile must be true, false or "auto", got {self.compile!r}')
        for key in ("batch_size", "grad_accum", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        for key in (
            "epochs",
            "max_steps",
            "eval_every",
            "log_every",
            "layer_norms_every",
            "checkpoint_every",
            "warmup_steps",
            "tbptt_steps",
            "bucket",
            "early_stopping_patience",
        ):
            if getattr(self, key) < 0:
                raise ValueError(f"train.{key} must be >= 0, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"train.min_lr must be between 0 and train.lr = {self.lr}, got {self.min_lr}")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be in [0, 1), got {getattr(self, key)}")
        if self.epochs == 0 and self.max_steps == 0:
            raise ValueError("set train.epochs or train.max_steps above 0: nothing would be trained")


@dataclass(frozen=True)
class Experiment:
    """One run's full description: ``[model]``, ``[data]`` and ``[train]``, each a frozen dataclass."""

    model: Any
    data: Any
    train: TrainConfig

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {"model": to_dict(self.model), "data": to_dict(self.data), "train": to_dict(self.train)}


def _section(raw: Mapping[str, Any], section: str, registry: Mapping[str, Any], default: str | None):
    values = raw.get(section, {})
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{section}] must be a table of keys, got {values!r}")
    name = values.get("name", default)
    if name not in registry:
        raise ConfigError(f"unknown {section}.name {name!r}; valid names: {', '.join(sorted(registry))}")
    cls = registry[name][0]
    return from_dict(cls, {**values, "name": name}, section)


def experiment_from_dict(raw: Mapping[str, Any]) -> Experiment:
    unknown = sorted(set(raw) - {"model", "data", "train"})
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]; valid sections: data, model, train")
    model = _section(raw, "model", MODELS, None)
    data = _section(raw, "data", DATASETS, None)
    if not isinstance(raw.get("train", {}), Mapping):
        raise ConfigError(f"[train] must be a table of keys, got {raw['train']!r}")
    train = from_dict(TrainConfig, raw.get("train", {}), "train")
    return Experiment(model, data, train)


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read a preset TOML file and apply ``--section.key=value`` overrides, checking every key and type."""
    return experiment_from_dict(merge(load_toml(path), parse_overrides(overrides or [])))

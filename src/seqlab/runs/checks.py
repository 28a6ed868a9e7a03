"""Does a model config fit the data it is given? Sizes taken from the data, and the checks that name the fix."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import ConfigError, toml_value
from ..train.config import Experiment
from ..train.contracts import ChecksData, ContextWindow, FixedInputShape

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

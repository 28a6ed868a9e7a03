"""The safetensors export: ``model.safetensors`` (tensors only, no pickle) and ``config.json``, read back by
``seqlab.load_pretrained(DIR)``.

safetensors stores each tensor once: a tied weight (GPT's head is its token embedding) is written
under one name and tied again when the model is rebuilt, which ``safetensors.torch.save_model`` and
``load_model`` do.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ConfigError, from_dict
from ..data.vocab import Vocabulary
from ..models import MODELS, build_model
from .common import CONFIG_FILE, SEQLAB_FILE, VOCAB_FILE, ExportedRun, config_json, vocab_json, write_json

WEIGHTS_FILE = "model.safetensors"


def write_safetensors(run: ExportedRun, out: Path) -> None:
    """model.safetensors, config.json and (a language model or seq2seq run) vocab.json into ``out``."""
    import safetensors.torch

    safetensors.torch.save_model(run.model, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    files = {WEIGHTS_FILE: "the model's parameters and buffers"}
    if run.vocabularies:
        write_json(out / VOCAB_FILE, vocab_json(run))
        files[VOCAB_FILE] = "token <-> id"
    write_json(out / CONFIG_FILE, config_json(run, "safetensors", files))


def _read_config(directory: Path) -> dict:
    path = directory / CONFIG_FILE
    if not directory.exists():
        raise ConfigError(f"export folder not found: {directory}")
    if not path.is_file():
        raise ConfigError(f"{directory} has no {CONFIG_FILE}: is it a seqlab export (seqlab export RUN --format ...)?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return config if isinstance(config, dict) and "model_config" in config else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); export the run again") from None


def load_pretrained(directory: str | Path) -> torch.nn.Module:
    """The model of a ``seqlab export --format safetensors`` folder, in eval mode on the CPU.

    Built from config.json's model config and filled from model.safetensors: no pickle is read.
    """
    import safetensors.torch

    directory = Path(directory)
    config = _read_config(directory)
    name = config.get("model_config", {}).get("name")
    if name not in MODELS and (directory / SEQLAB_FILE).is_file():
        raise ConfigError(
            f"{directory} is a Hugging Face export (--format hf): load it with transformers "
            "(GPT2LMHeadModel.from_pretrained) or seqlab's GPT.from_hf, or export the run with --format safetensors"
        )
    if name not in MODELS:
        raise ConfigError(f"{directory / CONFIG_FILE} names no seqlab model (model_config.name = {name!r})")
    if not (directory / WEIGHTS_FILE).is_file():
        raise ConfigError(f"{directory} has no {WEIGHTS_FILE}: load_pretrained reads a --format safetensors export")
    model = build_model(from_dict(MODELS[name][0], config["model_config"], "model"))
    try:
        safetensors.torch.load_model(model, str(directory / WEIGHTS_FILE), strict=True)
    except (RuntimeError, OSError, safetensors.SafetensorError) as err:
        # torch's "Error(s) in loading state_dict" puts its details on the lines after the first
        details = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise ConfigError(
            f"cannot load {directory / WEIGHTS_FILE} into the model its {CONFIG_FILE} describes: {details}; "
            "export the run again"
        ) from None
    return model.eval()


def load_vocabularies(directory: str | Path) -> dict[str, Vocabulary]:
    """The vocabularies of an export folder (its vocab.json): {"vocab": ...} or {"src_vocab": ..., "tgt_vocab": ...}."""
    path = Path(directory) / VOCAB_FILE
    if not path.is_file():
        return {}
    try:  # Vocabulary.from_dict checks what it reads: specials first, each token once
        stored = json.loads(path.read_text(encoding="utf-8"))
        return {
            name: Vocabulary.from_dict({"tokens": v["itos"], "specials": v["specials"]})
            for name, v in stored.items()
            if isinstance(v, dict)
        }
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: not a seqlab vocab.json: {err}") from None

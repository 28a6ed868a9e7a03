"""The recurrent encoder every recurrent task model shares, chosen by name in its config."""

from __future__ import annotations

import math

import torch.nn as nn

import seqlab.nn as snn

from ..config import check_at_least, check_choice
from ..nn.recurrent import IMPLS, INITS

RECURRENT = {"rnn": snn.RNN, "lstm": snn.LSTM, "gru": snn.GRU, "layernorm_lstm": snn.LayerNormLSTM}


def check_recurrent(cfg) -> None:
    """``model.cell`` and ``model.impl`` name a seqlab.nn layer and one of its implementations."""
    check_choice("model", cfg, "cell", tuple(RECURRENT))
    check_choice("model", cfg, "impl", IMPLS)
    check_init(cfg)


def check_init(cfg) -> None:
    """``model.init``, ``model.forget_bias``, ``model.chrono_max`` (see seqlab.nn.init_recurrent_); a plain RNN has
    no gate to bias. ``chrono_max`` = 0 is filled from the data's sequence length by the trainer."""
    check_choice("model", cfg, "init", INITS)
    check_at_least("model", cfg, "chrono_max", minimum=0)
    if not math.isfinite(cfg.forget_bias):
        raise ValueError(f"model.forget_bias must be a finite number, got {cfg.forget_bias}")
    if cfg.chrono_max == 1:
        raise ValueError("model.chrono_max must be 0 (the data's sequence length) or >= 2, got 1")
    gated = cfg.init == "chrono" or cfg.forget_bias != 0.0
    if gated and cfg.cell == "rnn":
        key = "model.init = 'chrono'" if cfg.init == "chrono" else f"model.forget_bias = {cfg.forget_bias}"
        raise ValueError(
            f"{key} sets a gate's bias, and model.cell = 'rnn' has no gate; use lstm, gru or layernorm_lstm"
        )


def init_encoder_(cfg, *modules: nn.Module) -> None:
    """Apply the config's ``init`` and ``forget_bias`` to freshly built recurrent modules (nothing by default)."""
    if cfg.init == "chrono" and cfg.chrono_max == 0:
        raise ValueError(
            "model.init = 'chrono' needs model.chrono_max (T_max), and none was given or taken from the data; "
            "set --model.chrono_max=T (the longest dependency, e.g. the sequence length)"
        )
    for module in modules:
        snn.init_recurrent_(module, init=cfg.init, forget_bias=cfg.forget_bias, chrono_max=cfg.chrono_max or None)


def recurrent_encoder(cfg, input_size: int, **kwargs):
    """A batch-first seqlab.nn layer from ``cfg.cell``, ``hidden_size``, ``num_layers``, ``dropout``, ``impl``,
    initialised by ``cfg.init`` and ``cfg.forget_bias``."""
    layer = RECURRENT[cfg.cell](
        input_size,
        cfg.hidden_size,
        num_layers=cfg.num_layers,
        dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        batch_first=True,
        impl=cfg.impl,
        **kwargs,
    )
    init_encoder_(cfg, layer)
    return layer

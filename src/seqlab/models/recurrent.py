"""The recurrent encoder every recurrent task model shares, chosen by name in its config."""

from __future__ import annotations

import seqlab.nn as snn

from ..config import check_choice
from ..nn.recurrent import IMPLS

RECURRENT = {"rnn": snn.RNN, "lstm": snn.LSTM, "gru": snn.GRU, "layernorm_lstm": snn.LayerNormLSTM}


def check_recurrent(cfg) -> None:
    """``model.cell`` and ``model.impl`` name a seqlab.nn layer and one of its implementations."""
    check_choice("model", cfg, "cell", tuple(RECURRENT))
    check_choice("model", cfg, "impl", IMPLS)


def recurrent_encoder(cfg, input_size: int, **kwargs):
    """A batch-first seqlab.nn layer from ``cfg.cell``, ``hidden_size``, ``num_layers``, ``dropout``, ``impl``."""
    return RECURRENT[cfg.cell](
        input_size,
        cfg.hidden_size,
        num_layers=cfg.num_layers,
        dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        batch_first=True,
        impl=cfg.impl,
        **kwargs,
    )

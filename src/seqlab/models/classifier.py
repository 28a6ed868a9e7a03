"""A sequence classifier: a recurrent encoder reads (B, T, C) and a linear head reads its last state.

This is the lecture's MNIST lab model: an LSTM reads an image row by row (T rows of C pixels)
and the final hidden state is classified.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ClassifierConfig:
    name: str = "rnn_classifier"
    cell: str = "lstm"  # "rnn", "lstm" or "gru"
    input_size: int = 8
    hidden_size: int = 128
    num_layers: int = 1
    num_classes: int = 10
    dropout: float = 0.0
    bidirectional: bool = False

    def __post_init__(self):
        if self.cell not in RECURRENT:
            raise ValueError(f"model.cell must be one of {', '.join(RECURRENT)}, got {self.cell!r}")
        for key in ("input_size", "hidden_size", "num_layers", "num_classes"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


RECURRENT = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class SequenceClassifier(nn.Module):
    """logits = W h_T + b, where h_T is the top layer's final hidden state (both directions)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.rnn = RECURRENT[config.cell](
            config.input_size, config.hidden_size, num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional, batch_first=True,
        )
        num_directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(num_directions * config.hidden_size, config.num_classes)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        """x: (B, T, C) -> logits (B, num_classes), and the cross-entropy loss if targets (B,) given."""
        B, T, C = x.shape
        if C != self.config.input_size:
            raise ValueError(f"expected input of {self.config.input_size} features per step, got shape {tuple(x.shape)}")
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state  # (L * D, B, H)
        D = 2 if self.config.bidirectional else 1
        h_top = h_n[-D:].transpose(0, 1).reshape(B, D * self.config.hidden_size)  # (B, D * H)
        logits = self.head(h_top)  # (B, num_classes)
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss

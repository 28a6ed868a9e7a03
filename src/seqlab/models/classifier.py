"""A sequence classifier: a recurrent encoder reads (B, T, C) and a linear head reads its last state.

This is the lecture's MNIST lab model: an LSTM reads an image row by row (T rows of C pixels)
and the final hidden state is classified. The encoder is a ``seqlab.nn`` layer: ``cell`` picks
the family and ``impl`` the implementation ("fused", "auto", "compiled" or "reference").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import check_at_least, check_fraction
from .recurrent import check_recurrent, recurrent_encoder


@dataclass(frozen=True)
class ClassifierConfig:
    name: str = "rnn_classifier"
    cell: str = "lstm"  # "rnn", "lstm", "gru" or "layernorm_lstm"
    impl: str = "fused"  # "fused" (torch's kernel where it has one), "auto", "compiled" or "reference"
    input_size: int = 8
    hidden_size: int = 128
    num_layers: int = 1
    num_classes: int = 10
    dropout: float = 0.0
    recurrent_dropout: float = 0.0  # variational dropout on h_{t-1}, one mask per sequence
    bidirectional: bool = False
    per_step: bool = False  # True: classify every time step (sequence labelling, e.g. the copy task)
    init: str = "default"  # "default" (torch's), "chrono" (forget/update-gate biases for T_max) or "orthogonal"
    forget_bias: float = 0.0  # added to the forget (LSTM) / update (GRU) gate's bias; 1.0: Gers et al. 2000
    chrono_max: int = 0  # T_max for init = "chrono"; 0: the data's sequence length

    def __post_init__(self):
        check_recurrent(self)
        check_at_least("model", self, "input_size", "hidden_size", "num_layers", "num_classes")
        check_fraction("model", self, "dropout", "recurrent_dropout")


class SequenceClassifier(nn.Module):
    """logits = W h_T + b, where h_T is the top layer's final hidden state (both directions).

    With ``per_step``, logits_t = W h_t + b at every step t instead (a sequence labeller).
    """

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.rnn = recurrent_encoder(
            config, config.input_size, bidirectional=config.bidirectional, recurrent_dropout=config.recurrent_dropout
        )
        num_directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(num_directions * config.hidden_size, config.num_classes)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.size(-1) != self.config.input_size:
            raise ValueError(f"expected input (B, T, {self.config.input_size}), got shape {tuple(x.shape)}")

    def _logits(self, state, B: int) -> torch.Tensor:
        h_n = state[0] if isinstance(state, tuple) else state  # (L * D, B, H)
        D = 2 if self.config.bidirectional else 1
        h_top = h_n[-D:].transpose(0, 1).reshape(B, D * self.config.hidden_size)  # (B, D * H)
        return self.head(h_top)  # (B, num_classes)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        """x: (B, T, C) -> logits (B, num_classes), and the cross-entropy loss if targets (B,) given.

        With ``per_step``: logits (B, T, num_classes) and targets (B, T), the loss averaged over
        all B * T steps.
        """
        self._check(x)
        h, state = self.rnn(x)  # h: (B, T, D * H)
        if self.config.per_step:
            logits = self.head(h)  # (B, T, num_classes)
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))  # over B*T steps
            return logits, loss
        logits = self._logits(state, x.size(0))
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss

    @torch.no_grad()
    def gates(self, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """The encoder's gate activations on x (B, T, C): {"l0": {"forget": (B, T, H), ...}, ...}.

        For the diagnostics' gate plots; a vanilla RNN has no gates and raises ValueError.
        """
        self._check(x)
        _, _, gates = self.rnn(x, return_gates=True)
        return gates

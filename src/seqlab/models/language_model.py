"""A recurrent character (or token) language model: P(x_t | x_<t) from the hidden state H_t.

This is the lecture's latent autoregressive model: the RNN summarises x_1..x_{t-1} in H_t, and
a linear layer turns H_t into next-token logits. It takes and returns its recurrent state, so the
trainer can carry it across consecutive chunks of a stream (truncated BPTT).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import check_at_least, check_fraction
from ..nn.losses import token_cross_entropy
from .recurrent import check_recurrent, recurrent_encoder


@dataclass(frozen=True)
class LanguageModelConfig:
    name: str = "rnn_lm"
    cell: str = "lstm"  # "rnn", "lstm", "gru" or "layernorm_lstm"
    impl: str = "fused"
    vocab_size: int = 0  # 0: the data's vocabulary size (seqlab train fills it in)
    embedding_size: int = 64
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.0
    label_smoothing: float = 0.0  # while training only
    init: str = "default"  # "default" (torch's), "chrono" (forget/update-gate biases for T_max) or "orthogonal"
    forget_bias: float = 0.0  # added to the forget (LSTM) / update (GRU) gate's bias; 1.0: Gers et al. 2000
    chrono_max: int = 0  # T_max for init = "chrono"; 0: the data's sequence length

    def __post_init__(self):
        check_recurrent(self)
        check_at_least("model", self, "vocab_size", minimum=0)
        check_at_least("model", self, "embedding_size", "hidden_size", "num_layers")
        check_fraction("model", self, "dropout", "label_smoothing")


class RNNLanguageModel(nn.Module):
    """logits_t = W H_t + b with H_t = RNN(embed(x_t), H_{t-1})."""

    def __init__(self, config: LanguageModelConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("LanguageModelConfig.vocab_size is 0 ('from the data'): set it before building the model")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embedding_size)
        self.rnn = recurrent_encoder(config, config.embedding_size)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.vocab_size = config.vocab_size

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, state=None):
        """x: (B, T) token ids -> logits (B, T, V), mean cross-entropy over all B*T targets, new state."""
        if x.dim() != 2 or x.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"expected token ids of shape (B, T) and an integer dtype, got {tuple(x.shape)} {x.dtype}")
        h, state = self.rnn(self.embed(x), state)  # (B, T, H)
        logits = self.head(self.drop(h))  # (B, T, V)
        loss = None
        if targets is not None:  # mean over all B*T tokens; smoothing only while training (val loss stays the NLL)
            smoothing = self.config.label_smoothing if self.training else 0.0
            loss = token_cross_entropy(logits, targets, ignore_index=None, label_smoothing=smoothing)
        return logits, loss, state

    # -- incremental decoding (seqlab.models.decoding.IncrementalDecoder) -----------------------
    @torch.no_grad()
    def begin_decoding(
        self, *, source=None, source_lengths=None, prompt: torch.Tensor | None = None, max_new_tokens: int
    ):
        """Read prompt (B, P) -> (state after prompt[:, :-1], first = prompt[:, -1]).

        The state is the RNN's H (an LSTM's (H, C)), or None (the zero state) for a one-token prompt.
        """
        if source is not None or source_lengths is not None:
            raise ValueError("a language model decodes from a prompt, not a source: pass prompt=(B, P) token ids")
        if prompt is None or prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ValueError(
                f"prompt must be (B, P) token ids with P >= 1, got {None if prompt is None else tuple(prompt.shape)}"
            )
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        state = self(prompt[:, :-1])[2] if prompt.shape[1] > 1 else None  # None: the zero state
        return state, prompt[:, -1]

    @torch.no_grad()
    def decode_step(self, state, tokens: torch.Tensor, *, need_weights: bool = False):
        """Feed tokens (B,) -> (logits (B, V), new state, {} when need_weights (no attention) else None)."""
        logits, _, state = self(tokens[:, None], state=state)  # (B, 1, V)
        return logits[:, -1], state, ({} if need_weights else None)

    def reorder_state(self, state, index: torch.Tensor):
        """Row i of the new state is row index[i]: states are (num_layers * num_directions, B, H)."""
        if state is None:
            return None
        if isinstance(state, torch.Tensor):
            return state.index_select(1, index)
        return type(state)(s.index_select(1, index) for s in state)

    def decoding_special_ids(self) -> dict:
        return {"bos": None, "eos": None, "pad": None}  # a character stream has none of them

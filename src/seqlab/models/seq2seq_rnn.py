"""A recurrent encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015).

The encoder (GRU or LSTM, optionally bidirectional) reads the embedded source into states
h_1..h_S. The decoder runs one step per target token (Luong's "global attention" decoder):

    s_t   = RNN([e(y_{t-1}); h̃_{t-1}], s_{t-1})       input feeding: the last attentional state goes back in
    α_t   = softmax_s(score(s_t, h_s))                 additive (Bahdanau), dot or general (Luong)
    c_t   = Σ_s α_t,s h_s
    h̃_t   = tanh(W_c [c_t; s_t])
    p(y_t | y_<t, x) = softmax(W_o h̃_t)

A bidirectional encoder gives each direction hidden_size / 2 units, so its states (both
directions concatenated) and its final state per layer have the decoder's hidden_size: they are
the memory and the decoder's initial state s_0 as they are. The encoder reads the padded batch
packed (``lengths``), so the backward direction starts at each sentence's own last token, and
the attention never looks at padding.

``teacher_forcing`` < 1 feeds the model's own greedy prediction instead of the true previous
token, for each sentence and step with probability 1 - teacher_forcing, while training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn

import seqlab.nn as snn

from ..config import check_at_least, check_choice
from ..nn.alignment import SCORES, Alignment
from ..nn.recurrent import IMPLS
from .recurrent import check_init, init_encoder_
from .seq2seq_common import Seq2SeqModel, check_seq2seq_config, check_seq2seq_data

__all__ = ["Seq2SeqRNNConfig", "Seq2SeqRNN", "RNNDecodeState"]

ENCODERS = {"gru": snn.GRU, "lstm": snn.LSTM}
CELLS = {"gru": snn.GRUCell, "lstm": snn.LSTMCell}


@dataclass(frozen=True)
class Seq2SeqRNNConfig:
    name: str = "seq2seq_rnn"
    cell: str = "gru"  # "gru" or "lstm", encoder and decoder
    impl: str = "fused"  # seqlab.nn implementation: "fused", "auto", "compiled" or "reference"
    src_vocab_size: int = 0  # 0: from the data
    tgt_vocab_size: int = 0  # 0: from the data
    embedding_size: int = 128
    hidden_size: int = 256  # decoder; a bidirectional encoder has hidden_size / 2 per direction
    num_layers: int = 1  # encoder and decoder
    bidirectional: bool = True  # encoder
    attention: str = "additive"  # "additive" (Bahdanau), "dot" or "general" (Luong)
    input_feeding: bool = True  # feed h̃_{t-1} into the decoder's next step (Luong 3.3)
    dropout: float = 0.1  # on embeddings, between layers, and on h̃ before the output layer
    teacher_forcing: float = 1.0  # probability of feeding the true previous token while training
    label_smoothing: float = 0.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    init: str = "default"  # "default" (torch's), "chrono" (forget/update-gate biases for T_max) or "orthogonal"
    forget_bias: float = 0.0  # added to the forget (LSTM) / update (GRU) gate's bias; 1.0: Gers et al. 2000
    chrono_max: int = 0  # T_max for init = "chrono"; 0: the data's sequence length

    def __post_init__(self):
        check_choice("model", self, "cell", tuple(ENCODERS))
        check_choice("model", self, "impl", IMPLS)
        check_init(self)
        check_choice("model", self, "attention", tuple(SCORES))
        check_at_least("model", self, "embedding_size", "hidden_size", "num_layers")
        check_seq2seq_config(self)
        if self.bidirectional and self.hidden_size % 2:
            raise ValueError(
                f"model.hidden_size must be even with model.bidirectional = true (each direction gets "
                f"half), got {self.hidden_size}"
            )
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError(f"model.teacher_forcing must be in [0, 1], got {self.teacher_forcing}")

    def check_data(self, info: dict) -> None:
        check_seq2seq_data(self, info)


class RNNDecodeState(NamedTuple):
    """One decoding position: the decoder state and what it attends to, every tensor batch-indexed."""

    s: tuple[torch.Tensor, ...]  # (h,) or (h, c), each (num_layers, B, H): s_{t-1}
    feed: torch.Tensor  # (B, H): h̃_{t-1} (zeros before the first step)
    memory: torch.Tensor  # (B, S, H): encoder states h_1..h_S
    prepared: torch.Tensor  # (B, S, *): the key side of the attention score, computed once
    mask: torch.Tensor  # (B, S) bool: True at real source positions


class Seq2SeqRNN(Seq2SeqModel):
    """GRU/LSTM encoder-decoder with attention; see the module docstring for the equations."""

    def __init__(self, config: Seq2SeqRNNConfig):
        super().__init__(config)
        c = config
        H, E, D = c.hidden_size, c.embedding_size, 2 if c.bidirectional else 1
        self.src_embed = nn.Embedding(c.src_vocab_size, E)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, E)
        self.encoder = ENCODERS[c.cell](
            E,
            H // D,
            num_layers=c.num_layers,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            bidirectional=c.bidirectional,
            impl=c.impl,
        )
        cell_impl = "reference" if c.impl == "reference" else "fused"
        self.cells = nn.ModuleList(
            CELLS[c.cell](E + (H if c.input_feeding else 0) if layer == 0 else H, H, impl=cell_impl)
            for layer in range(c.num_layers)
        )
        init_encoder_(c, self.encoder, self.cells)  # torch's init unless model.init / model.forget_bias say otherwise
        self.attention = Alignment(c.attention, query_size=H, key_size=H, attention_size=H)
        self.combine = nn.Linear(2 * H, H, bias=False)  # W_c
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(H, c.tgt_vocab_size)  # W_o

    # -- encoder ---------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> RNNDecodeState:
        """x (B, S) ids, lengths (B,) -> the state before the first target token."""
        c = self.config
        B, S = x.shape
        L, D, H = c.num_layers, 2 if c.bidirectional else 1, c.hidden_size
        memory, final = self.encoder(
            self.drop(self.src_embed(x)), lengths=lengths.cpu()
        )  # (B, S, H), (L * D, B, H / D)
        final = final if isinstance(final, tuple) else (final,)
        # Each layer's directions side by side: (L * D, B, H / D) -> (L, D, B, H / D) -> (L, B, D * H / D = H).
        s = tuple(f.view(L, D, B, H // D).permute(0, 2, 1, 3).reshape(L, B, H) for f in final)
        mask = torch.arange(S, device=x.device) < lengths.to(x.device).unsqueeze(1)  # (B, S)
        feed = memory.new_zeros(B, H)  # h̃_0
        return RNNDecodeState(s, feed, memory, self.attention.prepare(memory), mask)

    # -- one decoder step --------------------------------------------------------------------------
    def _step(self, state: RNNDecodeState, tokens: torch.Tensor) -> tuple[torch.Tensor, RNNDecodeState, torch.Tensor]:
        """tokens (B,) = y_{t-1} -> h̃_t (B, H), the new state, attention weights α_t (B, S)."""
        c = self.config
        inp = self.drop(self.tgt_embed(tokens))  # (B, E)
        if c.input_feeding:
            inp = torch.cat((inp, state.feed), dim=-1)  # (B, E + H)
        new = [[] for _ in state.s]  # per state tensor (h, c), one (B, H) per layer
        for layer, cell in enumerate(self.cells):
            prev = tuple(part[layer] for part in state.s)  # (B, H) each
            out = cell(inp, prev if c.cell == "lstm" else prev[0])
            out = out if isinstance(out, tuple) else (out,)
            for acc, part in zip(new, out):
                acc.append(part)
            inp = self.drop(out[0]) if layer + 1 < len(self.cells) else out[0]  # dropout between layers
        s_t = inp  # (B, H): the top layer's hidden state
        context, alpha = self.attention(s_t, state.memory, mask=state.mask, prepared=state.prepared)  # (B, H), (B, S)
        h_tilde = torch.tanh(self.combine(torch.cat((context, s_t), dim=-1)))  # (B, H)
        s = tuple(torch.stack(parts) for parts in new)  # (L, B, H) each
        return h_tilde, state._replace(s=s, feed=h_tilde), alpha

    def _teacher_forced(self, x, lengths, y_in, need_weights):
        """x (B, S), lengths (B,), y_in (B, T) -> logits (B, T, V), {"cross": (B, T, S)} or None."""
        state = self.encode(x, lengths)
        B, T = y_in.shape
        sample = self.training and self.config.teacher_forcing < 1.0
        tokens = y_in[:, 0]  # (B,) <bos>
        h_tildes, logits, alphas = [], [], []
        for t in range(T):
            h_tilde, state, alpha = self._step(state, tokens)
            alphas.append(alpha)
            if sample:  # the next input may be the model's own guess, so this step's logits are needed now
                logits.append(self.out(self.drop(h_tilde)))  # (B, V)
                if t + 1 < T:
                    own = logits[-1].detach().argmax(-1)  # (B,)
                    truth = torch.rand(B, device=y_in.device) < self.config.teacher_forcing  # (B,)
                    tokens = torch.where(truth, y_in[:, t + 1], own)
            else:
                h_tildes.append(h_tilde)
                if t + 1 < T:
                    tokens = y_in[:, t + 1]
        if sample:
            out = torch.stack(logits, dim=1)  # (B, T, V)
        else:
            out = self.out(self.drop(torch.stack(h_tildes, dim=1)))  # (B, T, H) -> (B, T, V)
        return out, ({"cross": torch.stack(alphas, dim=1)} if need_weights else None)  # (B, T, S)

    # -- the incremental-decoding contract (seqlab.models.decoding) ----------------------------------
    def begin_decoding(self, *, source=None, source_lengths=None, prompt=None, max_new_tokens: int):
        """source (B, S) ids [, source_lengths (B,)] -> (state, <bos> (B,)). No position limit."""
        if source is None or prompt is not None:
            raise ValueError("a seq2seq model decodes from a source (B, S); it takes no prompt")
        x, lengths = self._source(source, source_lengths)
        state = self.encode(x, lengths)
        return state, torch.full((x.shape[0],), self.config.bos_id, dtype=torch.long, device=x.device)

    def decode_step(self, state: RNNDecodeState, tokens: torch.Tensor, *, need_weights: bool = False):
        """tokens (B,) -> logits (B, V), new state, {"cross": α_t (B, S)} or None."""
        h_tilde, state, alpha = self._step(state, tokens)
        return self.out(self.drop(h_tilde)), state, ({"cross": alpha} if need_weights else None)

    def reorder_state(self, state: RNNDecodeState, index: torch.Tensor) -> RNNDecodeState:
        """Row i of the result is row index[i] of ``state``."""
        return RNNDecodeState(
            s=tuple(part.index_select(1, index) for part in state.s),
            feed=state.feed.index_select(0, index),
            memory=state.memory.index_select(0, index),
            prepared=state.prepared.index_select(0, index),
            mask=state.mask.index_select(0, index),
        )

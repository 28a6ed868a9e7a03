"""GPT: a decoder-only Transformer language model, P(x_t | x_<t) from causal self-attention.

nanoGPT's shape (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"):

    h_0 = E[x] + P          token embedding plus learned positions (or RoPE inside attention)
    h_l = h_{l-1} + Attn(LN(h_{l-1})), then h_l + MLP(LN(h_l))     pre-LN blocks, GELU MLP
    logits = LN(h_L) E^T    the output projection is the token embedding (weight tying)

GPT-2's initialisation: every weight N(0, 0.02^2), biases 0, and the two projections that write
into the residual stream (attention's W^O and the MLP's second linear) N(0, (0.02 / sqrt(2 L))^2),
so that the sum of 2L residual branches starts with about the variance of one.

A context longer than ``block_size`` is refused in ``forward``; ``begin_decoding`` and
``decode_step`` keep the last ``block_size`` tokens, as nanoGPT's ``generate`` crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

import seqlab.nn as snn

from ..config import check_at_least, check_choice, check_fraction
from ..nn.attention import KVCache
from ..nn.losses import token_cross_entropy

POSITIONS = ("learned", "rotary")
ACTIVATIONS = ("gelu", "gelu_tanh")  # exact GELU, or its tanh approximation (GPT-2's, needed for its weights)


@dataclass(frozen=True)
class GPTConfig:
    name: str = "gpt"
    vocab_size: int = 0  # 0: the data's vocabulary size
    block_size: int = 256  # longest context, T <= block_size
    d_model: int = 384
    num_heads: int = 6
    num_layers: int = 6
    d_ff: int = 0  # 0: 4 * d_model
    dropout: float = 0.2
    positions: str = "learned"  # "learned" (GPT-2) or "rotary" (RoPE on queries and keys)
    bias: bool = True  # biases in the linear layers and LayerNorms
    tie_weights: bool = True  # the output projection is the token embedding
    label_smoothing: float = 0.0  # while training only
    activation: str = "gelu"  # the MLP's: "gelu" (exact) or "gelu_tanh" (GPT-2's approximation)

    def __post_init__(self):
        check_at_least("model", self, "vocab_size", minimum=0)
        check_at_least("model", self, "block_size", "d_model", "num_heads", "num_layers")
        check_at_least("model", self, "d_ff", minimum=0)
        check_fraction("model", self, "dropout", "label_smoothing")
        check_choice("model", self, "positions", POSITIONS)
        check_choice("model", self, "activation", ACTIVATIONS)
        if self.d_model % self.num_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})")
        if self.positions == "rotary" and (self.d_model // self.num_heads) % 2:
            raise ValueError(
                f"model.positions = 'rotary' rotates pairs of features: the head size "
                f"d_model / num_heads = {self.d_model // self.num_heads} must be even"
            )


@dataclass
class GPTDecodeState:
    """What ``decode_step`` needs: one preallocated key/value cache per layer and the tokens they hold."""

    caches: list[KVCache]
    context: torch.Tensor  # (B, L) the tokens whose keys and values the caches hold, L <= block_size


class GPT(nn.Module):
    """x (B, T) token ids, T <= block_size -> logits (B, T, V), mean cross-entropy loss given targets (B, T)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("GPTConfig.vocab_size is 0 ('from the data'): set it before building the model")
        self.config = config
        self.vocab_size = config.vocab_size
        self.block_size = config.block_size
        rotary = config.positions == "rotary"
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        # With RoPE the positions enter every attention; the embedding dropout stays.
        self.pos = None if rotary else snn.LearnedPositionalEncoding(config.d_model, max_len=config.block_size)
        self.drop = nn.Dropout(config.dropout)
        self.stack = snn.DecoderOnlyStack(
            config.d_model,
            config.num_heads,
            config.num_layers,
            config.d_ff or 4 * config.d_model,
            dropout=config.dropout,
            activation=config.activation,
            bias=config.bias,
            rotary=rotary,
        )
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self._init_weights()
        if config.tie_weights:
            self.head.weight = self.embed.weight  # one tensor: E is both the input table and W_out

    @classmethod
    def from_hf(cls, model_or_dir) -> GPT:
        """A GPT (eval mode) holding the weights of a Hugging Face ``GPT2LMHeadModel`` or a directory with one.

        Needs ``transformers`` (the ``hf`` extra) only for a directory; the mapping is ``gpt_hf.py``'s.
        """
        from .gpt_hf import gpt_from_hf

        return gpt_from_hf(model_or_dir)

    def _init_weights(self) -> None:
        """GPT-2: N(0, 0.02^2) weights, zero biases; residual projections N(0, (0.02 / sqrt(2 L))^2)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        if self.pos is not None:
            nn.init.normal_(self.pos.weight, std=0.02)
        residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for layer in self.stack.layers:
            nn.init.normal_(layer.self_attn.out_proj.weight, std=residual_std)
            nn.init.normal_(layer.ff.linear2.weight, std=residual_std)

    def _embed(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Token ids (B, T) at positions offset .. offset + T - 1 -> (B, T, d_model)."""
        h = self.embed(x)  # (B, T, d_model)
        if self.pos is not None:
            return self.pos(h, offset)  # learned positions added, no dropout inside
        return h

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        """x (B, T) ids -> logits (B, T, V), loss (mean cross-entropy over B*T targets) or None."""
        if x.dim() != 2 or x.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"expected token ids of shape (B, T) and an integer dtype, got {tuple(x.shape)} {x.dtype}")
        B, T = x.shape
        if T > self.block_size:
            raise ValueError(
                f"sequence length {T} exceeds model.block_size = {self.block_size}: "
                f"use data.seq_len <= {self.block_size} or a larger model.block_size"
            )
        h = self.drop(self._embed(x))  # (B, T, d_model)
        h, _ = self.stack(h)  # (B, T, d_model), causal, final LayerNorm applied
        logits = self.head(h)  # (B, T, V)
        loss = None
        if targets is not None:  # mean over all B*T tokens (a character stream has no padding)
            # Smoothing only while training: val and test losses stay the plain NLL in nats/token.
            smoothing = self.config.label_smoothing if self.training else 0.0
            loss = token_cross_entropy(logits, targets, ignore_index=None, label_smoothing=smoothing)
        return logits, loss

    # -- incremental decoding (seqlab.models.decoding.IncrementalDecoder) -----------------------
    def _run(self, x: torch.Tensor, caches: list[KVCache], need_weights: bool):
        """Feed x (B, T) after the cached steps -> last step's logits (B, V), weights [(B, H, T_k)] or None."""
        h = self.drop(self._embed(x, offset=len(caches[0])))  # (B, T, d_model)
        h, weights = self.stack(h, caches=caches, need_weights=need_weights)  # (B, T, d_model)
        logits = self.head(h[:, -1])  # (B, V)
        return logits, (None if weights is None else [w[:, :, -1] for w in weights])  # (B, H, T_k) per layer

    def _refill(self, context: torch.Tensor, room: int, need_weights: bool = False):
        """New caches (room for ``room`` steps) fed all of ``context`` (B, L) -> (logits, state, weights)."""
        caches = self.stack.new_caches(max_len=room)
        logits, weights = self._run(context, caches, need_weights)
        return logits, GPTDecodeState(caches, context), weights

    @torch.no_grad()
    def begin_decoding(
        self, *, source=None, source_lengths=None, prompt: torch.Tensor | None = None, max_new_tokens: int
    ) -> tuple[GPTDecodeState, torch.Tensor]:
        """Read prompt (B, P) (its last block_size tokens) -> (state holding prompt[:, :-1], first = prompt[:, -1])."""
        if source is not None or source_lengths is not None:
            raise ValueError("a GPT decodes from a prompt, not a source: pass prompt=(B, P) token ids")
        if prompt is None or prompt.dim() != 2 or prompt.shape[1] < 1:
            raise ValueError(
                f"prompt must be (B, P) token ids with P >= 1, got {None if prompt is None else tuple(prompt.shape)}"
            )
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        prompt = prompt[:, -self.block_size :]  # (B, P) with P <= block_size
        P = prompt.shape[1]
        # The caches hold prompt[:, :-1] now and one more key per step: P - 1 + max_new_tokens at most.
        caches = self.stack.new_caches(max_len=min(P - 1 + max_new_tokens, self.block_size))
        if P > 1:
            self._run(prompt[:, :-1], caches, need_weights=False)
        return GPTDecodeState(caches, prompt[:, :-1]), prompt[:, -1]

    @torch.no_grad()
    def decode_step(self, state: GPTDecodeState, tokens: torch.Tensor, *, need_weights: bool = False):
        """Feed tokens (B,) -> (logits (B, V), state, {"self": [(B, H, t) per layer]} or None).

        While the context fits the caches, one new query attends to every cached key. Beyond
        ``block_size`` tokens the context keeps its last ``block_size`` (positions start again at 0),
        so the caches are rebuilt from it, as an uncached model would read that window.
        """
        context = torch.cat((state.context, tokens[:, None]), dim=1)  # (B, L + 1)
        caches = state.caches
        if len(caches[0]) < (caches[0].max_len or 0):
            logits, weights = self._run(tokens[:, None], caches, need_weights)
            state = GPTDecodeState(caches, context)
        else:
            context = context[:, -self.block_size :]  # (B, L') with L' <= block_size
            room = min(2 * context.shape[1], self.block_size)  # fed past max_new_tokens: grow, do not refill each step
            logits, state, weights = self._refill(context, room, need_weights)
        return logits, state, ({"self": weights} if need_weights else None)

    def reorder_state(self, state: GPTDecodeState, index: torch.Tensor) -> GPTDecodeState:
        """Row i of the new state is row index[i] of ``state`` (caches and context alike)."""
        return GPTDecodeState([c.index_select(index) for c in state.caches], state.context.index_select(0, index))

    def decoding_special_ids(self) -> dict:
        return {"bos": None, "eos": None, "pad": None}  # a character stream has none of them

"""The Transformer encoder-decoder as a translation model ("Attention Is All You Need", figure 1).

    memory = Encoder(E_src[x] sqrt(d) + P)                        source (B, S) -> (B, S, d)
    h      = Decoder(E_tgt[y_<t] sqrt(d) + P, memory)             causal self-attention, then attention over memory
    p(y_t | y_<t, x) = softmax(h_t W_o^T + b),   W_o = E_tgt when ``tie_output`` (section 3.4)

Positions are sinusoidal (added, 3.5), learned (added) or rotary (RoPE in every self-attention;
cross-attention compares a target position with source positions, which RoPE does not relate), or
none: the ablation that shows why they are there (the encoder is then permutation-equivariant, so it
cannot tell "1 2" from "2 1"; the causal decoder can still count its own steps).
Embeddings start at N(0, 1/d) and are scaled by sqrt(d), so the tied output layer starts with
logits of unit scale. Padding: the encoder's self-attention and the decoder's cross-attention
see only real source tokens; the decoder's self-attention is causal and sees only real target
tokens (``masks.key_padding_mask``), so a sentence's outputs do not depend on its neighbours.

Decoding (``seqlab.models.decoding``) keeps per-layer key/value caches: the self-attention's
grows by one step per token (preallocated for ``max_new_tokens``), the cross-attention's holds
the projected memory, computed once per sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import ConfigError, check_at_least, check_choice
from ..nn.masks import causal_mask, combine, key_padding_mask
from ..nn.positional import LearnedPositionalEncoding, SinusoidalPositionalEncoding
from ..nn.transformer import ACTIVATIONS, TransformerDecoder, TransformerEncoder
from .seq2seq_common import Seq2SeqModel, check_seq2seq_config, check_seq2seq_data

__all__ = ["Seq2SeqTransformerConfig", "Seq2SeqTransformer", "TransformerDecodeState"]

POSITIONS = ("sinusoidal", "learned", "rotary", "none")


@dataclass(frozen=True)
class Seq2SeqTransformerConfig:
    name: str = "seq2seq_transformer"
    src_vocab_size: int = 0  # 0: from the data
    tgt_vocab_size: int = 0  # 0: from the data
    max_src_len: int = 0  # longest source the model reads, <eos> included (0: the data's longest)
    max_tgt_len: int = 0  # longest target, <bos> and <eos> included (0: the data's longest)
    d_model: int = 128
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    activation: str = "relu"  # "relu" or "gelu"
    norm_first: bool = True  # pre-LN; false: post-LN, as in the paper
    positions: str = "sinusoidal"  # "sinusoidal", "learned", "rotary" or "none" (an ablation)
    share_embeddings: bool = False  # one embedding table for source and target (needs one vocabulary)
    tie_output: bool = True  # the output layer's weight is the target embedding
    label_smoothing: float = 0.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        check_choice("model", self, "positions", POSITIONS)
        check_choice("model", self, "activation", tuple(ACTIVATIONS))
        check_at_least("model", self, "d_model", "num_heads", "num_encoder_layers", "num_decoder_layers", "d_ff")
        check_at_least("model", self, "max_src_len", "max_tgt_len", minimum=0)
        check_seq2seq_config(self)
        if self.d_model % self.num_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})")
        if self.positions == "rotary" and (self.d_model // self.num_heads) % 2:
            raise ValueError(
                f"rotary positions rotate pairs of features: model.d_model / model.num_heads must be "
                f"even, got {self.d_model // self.num_heads}"
            )

    def check_data(self, info: dict) -> None:
        """Sizes as the data's; the data's longest source and target fit; one vocabulary if shared."""
        check_seq2seq_data(self, info)
        for key, what in (("max_src_len", "sources"), ("max_tgt_len", "targets")):
            if key in info and info[key] > getattr(self, key):
                raise ConfigError(
                    f"the data has {what} of up to {info[key]} tokens but model.{key} = "
                    f"{getattr(self, key)}; set --model.{key}={info[key]} (or 0 to take it from the "
                    f"data), or filter shorter sentences (data.max_len)"
                )
        if self.share_embeddings and info.get("src_vocab") is not None and info["src_vocab"] != info.get("tgt_vocab"):
            raise ConfigError(
                "model.share_embeddings = true needs one vocabulary for source and target, but the data "
                f"has two ({info['src_vocab_size']} and {info['tgt_vocab_size']} tokens); "
                "set --model.share_embeddings=false"
            )


@dataclass
class TransformerDecodeState:
    """The decoder's caches and what it attends to. decode_step appends to the caches in place."""

    memory: torch.Tensor  # (B, S, d_model)
    src_mask: torch.Tensor  # (B, 1, 1, S) bool: True at real source tokens
    caches: list  # per decoder layer, a KVCache of the self-attention's keys and values
    memory_caches: list  # per decoder layer, a static KVCache of the projected memory
    t: int  # the position of the next token fed


class Seq2SeqTransformer(Seq2SeqModel):
    """Encoder-decoder Transformer on seqlab.nn layers; see the module docstring."""

    def __init__(self, config: Seq2SeqTransformerConfig):
        super().__init__(config)
        c = config
        for key in ("max_src_len", "max_tgt_len"):
            if getattr(c, key) < (1 if key == "max_src_len" else 2):
                raise ValueError(
                    f"model.{key} is {getattr(c, key)}: set it, or train through seqlab, which takes it from the data"
                )
        if c.share_embeddings and c.src_vocab_size != c.tgt_vocab_size:
            raise ValueError(
                f"model.share_embeddings needs one vocabulary, got model.src_vocab_size = "
                f"{c.src_vocab_size} and model.tgt_vocab_size = {c.tgt_vocab_size}"
            )
        d = c.d_model
        self.src_embed = nn.Embedding(c.src_vocab_size, d)
        self.tgt_embed = self.src_embed if c.share_embeddings else nn.Embedding(c.tgt_vocab_size, d)
        for emb in {id(e): e for e in (self.src_embed, self.tgt_embed)}.values():
            nn.init.normal_(emb.weight, std=d**-0.5)
        if c.positions == "sinusoidal":
            self.src_pos = self.tgt_pos = SinusoidalPositionalEncoding(
                d, max_len=max(c.max_src_len, c.max_tgt_len), dropout=c.dropout
            )
        elif c.positions == "learned":
            self.src_pos = LearnedPositionalEncoding(d, max_len=c.max_src_len, dropout=c.dropout)
            self.tgt_pos = LearnedPositionalEncoding(d, max_len=c.max_tgt_len - 1, dropout=c.dropout)
        else:  # rotary: positions enter inside the attentions; none: no position information at all
            self.src_pos = self.tgt_pos = nn.Dropout(c.dropout)
        common = dict(
            dropout=c.dropout, activation=c.activation, norm_first=c.norm_first, rotary=c.positions == "rotary"
        )
        self.encoder = TransformerEncoder(d, c.num_heads, c.d_ff, c.num_encoder_layers, **common)
        self.decoder = TransformerDecoder(d, c.num_heads, c.d_ff, c.num_decoder_layers, **common)
        self.out = nn.Linear(d, c.tgt_vocab_size)
        if c.tie_output:
            self.out.weight = self.tgt_embed.weight

    def _embed(self, ids: torch.Tensor, embed: nn.Embedding, pos: nn.Module, offset: int = 0) -> torch.Tensor:
        h = embed(ids) * math.sqrt(self.config.d_model)  # (B, T, d)
        return pos(h) if isinstance(pos, nn.Dropout) else pos(h, offset)  # (B, T, d)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor, need_weights: bool = False):
        """x (B, S), lengths (B,) -> memory (B, S, d), source mask (B, 1, 1, S), encoder weights or None."""
        S = x.shape[1]
        if S > self.config.max_src_len:
            raise ValueError(
                f"a source of {S} tokens (<eos> included) is longer than this model reads: "
                f"model.max_src_len = {self.config.max_src_len}"
            )
        src_mask = key_padding_mask(lengths, S)  # (B, 1, 1, S)
        memory, weights = self.encoder(
            self._embed(x, self.src_embed, self.src_pos), attn_mask=src_mask, need_weights=need_weights
        )  # (B, S, d)
        return memory, src_mask, weights

    def _teacher_forced(self, x, lengths, y_in, need_weights):
        """x (B, S), lengths (B,), y_in (B, T) -> logits (B, T, V), weights dict or None."""
        T = y_in.shape[1]
        if T > self.config.max_tgt_len - 1:
            raise ValueError(
                f"a target of {T + 1} tokens (<bos> and <eos> included) is longer than this model "
                f"writes: model.max_tgt_len = {self.config.max_tgt_len}"
            )
        memory, src_mask, enc_w = self.encode(x, lengths, need_weights)
        logits, dec_w = self.decode_prefix(memory, src_mask, y_in, need_weights)  # (B, T, V)
        if not need_weights:
            return logits, None
        return logits, {"encoder": enc_w, "self": [w[0] for w in dec_w], "cross": [w[1] for w in dec_w]}

    def decode_prefix(self, memory, src_mask, y_in, need_weights: bool = False):
        """memory (B, S, d), src_mask (B, 1, 1, S), y_in (B, T) target prefix -> logits (B, T, V), weights or None.

        logits[:, t] scores the token after y_in[:, :t + 1]: the decoder fed a whole prefix at once.
        """
        T = y_in.shape[1]
        # Causal, and no real query attends to padding (right-padded, so causal already implies that for
        # real queries; the padding mask keeps the pad queries' rows from reading each other, for clarity).
        tgt_pad = key_padding_mask((y_in != self.config.pad_id).sum(-1).clamp(min=1), T)  # (B, 1, 1, T)
        tgt_mask = combine(causal_mask(T, device=y_in.device), tgt_pad)  # (B, 1, T, T)
        h, dec_w = self.decoder(
            self._embed(y_in, self.tgt_embed, self.tgt_pos),
            memory,
            attn_mask=tgt_mask,
            memory_mask=src_mask,
            is_causal=False,
            need_weights=need_weights,
        )  # (B, T, d)
        return self.out(h), dec_w  # (B, T, V)

    # -- the incremental-decoding contract (seqlab.models.decoding) ----------------------------------
    def begin_decoding(self, *, source=None, source_lengths=None, prompt=None, max_new_tokens: int):
        """source (B, S) ids [, source_lengths (B,)] -> (state, <bos> (B,)); caches room for max_new_tokens."""
        if source is None or prompt is not None:
            raise ValueError("a seq2seq model decodes from a source (B, S); it takes no prompt")
        limit = self.config.max_tgt_len - 1
        if not 1 <= max_new_tokens <= limit:
            raise ValueError(
                f"max_new_tokens must be in 1..{limit} (model.max_tgt_len = {self.config.max_tgt_len} "
                f"counts <bos> too), got {max_new_tokens}"
            )
        x, lengths = self._source(source, source_lengths)
        memory, src_mask, _ = self.encode(x, lengths)
        state = TransformerDecodeState(
            memory, src_mask, self.decoder.new_caches(max_len=max_new_tokens), self.decoder.new_memory_caches(), 0
        )
        return state, torch.full((x.shape[0],), self.config.bos_id, dtype=torch.long, device=x.device)

    def decode_step(self, state: TransformerDecodeState, tokens: torch.Tensor, *, need_weights: bool = False):
        """tokens (B,) at position state.t -> logits (B, V), the state (caches extended in place), weights.

        weights: {"self": [(B, heads, t + 1) per layer], "cross": (B, heads, S) of the last layer,
        "cross_layers": [(B, heads, S) per layer]} when ``need_weights``.
        """
        h = self._embed(tokens.unsqueeze(1), self.tgt_embed, self.tgt_pos, offset=state.t)  # (B, 1, d)
        h, w = self.decoder(
            h,
            state.memory,
            memory_mask=state.src_mask,
            is_causal=True,
            need_weights=need_weights,
            caches=state.caches,
            memory_caches=state.memory_caches,
        )  # (B, 1, d)
        state.t += 1
        logits = self.out(h[:, -1])  # (B, V)
        if not need_weights:
            return logits, state, None
        cross = [wc[:, :, -1] for _, wc in w]  # (B, heads, S) per layer
        return logits, state, {"self": [ws[:, :, -1] for ws, _ in w], "cross": cross[-1], "cross_layers": cross}

    def reorder_state(self, state: TransformerDecodeState, index: torch.Tensor) -> TransformerDecodeState:
        """Row i of the result is row index[i] of ``state`` (new caches; ``state`` is left as it was)."""
        return TransformerDecodeState(
            state.memory.index_select(0, index),
            state.src_mask.index_select(0, index),
            [c.index_select(index) for c in state.caches],
            [c.index_select(index) for c in state.memory_caches],
            state.t,
        )

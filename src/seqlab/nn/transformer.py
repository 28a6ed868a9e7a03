"""The Transformer's stacks ("Attention Is All You Need", figure 1): encoder, decoder, the encoder-decoder
``Transformer``, and GPT's ``DecoderOnlyStack``; their layers are in transformer_layers.py.

Everything is batch-first, (B, T, d_model). Every stack returns ``(output, weights)``, ``weights``
being None unless ``need_weights=True``; nothing is kept on the module.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .attention import KVCache
from .transformer_layers import ACTIVATIONS, FeedForward, TransformerDecoderLayer, TransformerEncoderLayer

__all__ = [
    "ACTIVATIONS",  # the layers' names are re-exported: seqlab.nn.transformer is where the models look
    "FeedForward",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerDecoder",
    "Transformer",
    "DecoderOnlyStack",
]


class TransformerEncoder(nn.Module):
    """``num_layers`` encoder layers, then a final LayerNorm if ``final_norm`` (default: with pre-LN).

    (B, T, d_model) -> (B, T, d_model), and a list of every layer's weights (B, H, T, T) on request.
    Pre-LN layers never normalise the residual stream itself, hence the final norm.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        num_layers: int,
        *,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        rotary: bool = False,
        final_norm: bool | None = None,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                d_model,
                num_heads,
                d_ff,
                dropout=dropout,
                activation=activation,
                norm_first=norm_first,
                layer_norm_eps=layer_norm_eps,
                bias=bias,
                rotary=rotary,
            )
            for _ in range(num_layers)
        )
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias) if final_norm else None

    def new_caches(self, max_len: int | None = None) -> list[KVCache]:
        """One empty key/value cache per layer, for incremental (causal) decoding (``max_len``: preallocated)."""
        return [KVCache(max_len=max_len) for _ in self.layers]

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        caches: list[KVCache] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """x (B, T, d_model) -> (B, T, d_model), [weights (B, H, T, T_k) per layer] or None."""
        if caches is not None and len(caches) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} caches (one per layer), got {len(caches)}")
        weights = [] if need_weights else None
        for i, layer in enumerate(self.layers):
            x, w = layer(
                x,
                attn_mask=attn_mask,
                is_causal=is_causal,
                need_weights=need_weights,
                cache=None if caches is None else caches[i],
            )
            if need_weights:
                weights.append(w)
        if self.norm is not None:
            x = self.norm(x)
        return x, weights


class DecoderOnlyStack(TransformerEncoder):
    """GPT-style stack: pre-LN causal self-attention blocks (no cross-attention) and a final LayerNorm.

    (B, T, d_model) -> (B, T, d_model). Token embeddings, positions (unless ``rotary``) and the
    language-model head belong to the model that uses it. Causal by default; pass
    ``caches=stack.new_caches()`` and feed one token at a time to decode incrementally.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_layers: int,
        d_ff: int | None = None,
        *,
        dropout: float = 0.0,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        rotary: bool = False,
    ):
        super().__init__(
            d_model,
            num_heads,
            4 * d_model if d_ff is None else d_ff,
            num_layers,
            dropout=dropout,
            activation=activation,
            norm_first=True,
            layer_norm_eps=layer_norm_eps,
            bias=bias,
            rotary=rotary,
            final_norm=True,
        )

    def forward(self, x, *, attn_mask=None, is_causal: bool = True, need_weights: bool = False, caches=None):
        """x (B, T, d_model) -> (B, T, d_model), [weights (B, H, T, T_k) per layer] or None."""
        return super().forward(x, attn_mask=attn_mask, is_causal=is_causal, need_weights=need_weights, caches=caches)


class TransformerDecoder(nn.Module):
    """``num_layers`` decoder layers (+ final LayerNorm as in TransformerEncoder).

    x (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model), and a list of every layer's
    (self, cross) weights on request.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        num_layers: int,
        *,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        rotary: bool = False,
        final_norm: bool | None = None,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(
                d_model,
                num_heads,
                d_ff,
                dropout=dropout,
                activation=activation,
                norm_first=norm_first,
                layer_norm_eps=layer_norm_eps,
                bias=bias,
                rotary=rotary,
            )
            for _ in range(num_layers)
        )
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias) if final_norm else None

    def new_caches(self, max_len: int | None = None) -> list[KVCache]:
        """One empty self-attention key/value cache per layer, for incremental decoding (``max_len``: preallocated)."""
        return [KVCache(max_len=max_len) for _ in self.layers]

    def new_memory_caches(self) -> list[KVCache]:
        """One static cache per layer: each cross-attention projects the memory once and reuses it."""
        return [KVCache(static=True) for _ in self.layers]

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        is_causal: bool = True,
        need_weights: bool = False,
        caches: list[KVCache] | None = None,
        memory_caches: list[KVCache] | None = None,
    ):
        """x (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model), [(self, cross) per layer] or None.

        ``caches`` (``new_caches()``) and ``memory_caches`` (``new_memory_caches()``) are passed to
        the layers: feeding the target a step (or a few) at a time then equals one causal pass.
        """
        for name, given in (("caches", caches), ("memory_caches", memory_caches)):
            if given is not None and len(given) != len(self.layers):
                raise ValueError(f"expected {len(self.layers)} {name} (one per layer), got {len(given)}")
        weights = [] if need_weights else None
        for i, layer in enumerate(self.layers):
            x, w = layer(
                x,
                memory,
                attn_mask=attn_mask,
                memory_mask=memory_mask,
                is_causal=is_causal,
                need_weights=need_weights,
                cache=None if caches is None else caches[i],
                memory_cache=None if memory_caches is None else memory_caches[i],
            )
            if need_weights:
                weights.append(w)
        if self.norm is not None:
            x = self.norm(x)
        return x, weights


class Transformer(nn.Module):
    """The encoder-decoder of the paper: src (B, S, d_model), tgt (B, T, d_model) -> (B, T, d_model).

    Like ``torch.nn.Transformer`` it takes embedded inputs and ends both stacks with a LayerNorm.
    With ``need_weights`` the second output is ``{"encoder": [...], "decoder": [(self, cross), ...]}``.
    """

    def __init__(
        self,
        d_model: int = 512,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        d_ff: int = 2048,
        *,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
    ):
        super().__init__()
        common = dict(
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            layer_norm_eps=layer_norm_eps,
            bias=bias,
            final_norm=True,
        )
        self.encoder = TransformerEncoder(d_model, num_heads, d_ff, num_encoder_layers, **common)
        self.decoder = TransformerDecoder(d_model, num_heads, d_ff, num_decoder_layers, **common)

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        *,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        tgt_is_causal: bool = True,
        need_weights: bool = False,
        caches: list[KVCache] | None = None,
        memory_caches: list[KVCache] | None = None,
    ):
        """src (B, S, d_model), tgt (B, T, d_model) -> (B, T, d_model), weights dict or None.

        For incremental decoding pass the decoder's ``caches=model.decoder.new_caches()`` and
        ``memory_caches=model.decoder.new_memory_caches()`` and feed ``tgt`` a step at a time
        (the encoder still reads ``src`` on every call; the cross-attention projects it once).
        """
        memory, enc_w = self.encoder(src, attn_mask=src_mask, need_weights=need_weights)  # (B, S, d_model)
        out, dec_w = self.decoder(
            tgt,
            memory,
            attn_mask=tgt_mask,
            memory_mask=memory_mask,
            is_causal=tgt_is_causal,
            need_weights=need_weights,
            caches=caches,
            memory_caches=memory_caches,
        )  # (B, T, d_model)
        return out, ({"encoder": enc_w, "decoder": dec_w} if need_weights else None)

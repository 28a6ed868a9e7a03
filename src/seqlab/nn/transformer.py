"""The Transformer's layers and stacks ("Attention Is All You Need", section 3.1 and figure 1).

Encoder layer: self-attention, then a position-wise feed-forward network; each sublayer is
wrapped in a residual connection and a layer norm. Decoder layer: masked (causal) self-attention,
attention over the encoder's output ("memory"), then the feed-forward network.

Two places for the norm:

    post-LN (the paper, ``norm_first=False``):  x = LayerNorm(x + Sublayer(x))
    pre-LN  (GPT-2 and later, ``norm_first=True``):  x = x + Sublayer(LayerNorm(x))

Each layer is built of ``sublayers.py``: the feed-forward network and ``sublayer_connection``, the
one place where the residual and the norm are written.

Everything is batch-first, (B, T, d_model), except a layer built with ``batch_first=False`` (as
``from_torch`` does for a sequence-first torch layer), which reads and returns (T, B, d_model);
masks and weights keep the batch first either way. Every attention module returns
``(output, weights)``, ``weights`` being None unless ``need_weights=True``; nothing is kept on the module.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .attention import KVCache, MultiHeadAttention
from .sublayers import ACTIVATIONS, FeedForward, activation_name, sublayer_connection

# ACTIVATIONS and FeedForward are sublayers.py's, re-exported: the models import them from here.
__all__ = ["ACTIVATIONS", "FeedForward", "TransformerEncoderLayer", "TransformerDecoderLayer"]  # the layers
__all__ += ["TransformerEncoder", "TransformerDecoder", "Transformer", "DecoderOnlyStack"]  # the stacks


class _TransformerLayer(nn.Module):
    """What the encoder and decoder layers share: the constructor (torch's defaults: d_ff=2048,
    dropout=0.1, relu, post-LN), the layout, ``from_torch``. A decoder layer (``cross = True``) also
    has the attention over memory and a third norm and dropout; the order the modules are made in is
    their parameters' order (the initial weights of a seed, an optimiser's state in a checkpoint)."""

    cross: bool  # True: a decoder layer, with cross_attn, norm3, dropout3
    torch_layer: type[nn.Module]  # the torch layer from_torch copies

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int = 2048,
        *,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        rotary: bool = False,
        batch_first: bool = True,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, num_heads, dropout=dropout, bias=bias, rotary=rotary, batch_first=batch_first
        )
        if self.cross:  # no rotary: source and target positions are not comparable
            self.cross_attn = MultiHeadAttention(
                d_model, num_heads, dropout=dropout, bias=bias, batch_first=batch_first
            )
        self.ff = FeedForward(d_model, d_ff, dropout=dropout, activation=activation, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        if self.cross:
            self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        if self.cross:
            self.dropout3 = nn.Dropout(dropout)

    @property
    def batch_first(self) -> bool:
        """True: x (and memory) are (B, T, d_model); False: (T, B, d_model), as a sequence-first torch layer's."""
        return self.self_attn.batch_first

    @classmethod
    def from_torch(cls, layer: nn.Module, *, batch_first: bool | None = None):
        """An equal layer (same numbers, same layout) from ``torch.nn.TransformerEncoderLayer`` (for
        ``TransformerEncoderLayer``) or ``torch.nn.TransformerDecoderLayer`` (for ``TransformerDecoderLayer``).

        It takes the layer's layout (``layer.self_attn.batch_first``: (B, T, E) or (T, B, E)) unless
        ``batch_first`` says otherwise. Masks keep seqlab's convention: convert torch's with
        ``masks.from_torch_mha``.
        """
        if not isinstance(layer, cls.torch_layer):
            raise TypeError(f"expected torch.nn.{cls.torch_layer.__name__}, got {type(layer).__name__}")
        new = cls(
            layer.linear1.in_features,
            layer.self_attn.num_heads,
            layer.linear1.out_features,
            dropout=layer.dropout.p,
            activation=activation_name(layer),
            norm_first=layer.norm_first,
            layer_norm_eps=layer.norm1.eps,
            bias=layer.linear1.bias is not None,
        )
        new.to(device=layer.linear1.weight.device, dtype=layer.linear1.weight.dtype)
        layout = layer.self_attn.batch_first if batch_first is None else batch_first
        new.self_attn = MultiHeadAttention.from_torch(layer.self_attn, batch_first=layout)
        copies = [(new.ff.linear1, layer.linear1), (new.ff.linear2, layer.linear2)]
        copies += [(new.norm1, layer.norm1), (new.norm2, layer.norm2)]
        if cls.cross:
            new.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn, batch_first=layout)
            copies.append((new.norm3, layer.norm3))
        for mine, theirs in copies:
            mine.load_state_dict(theirs.state_dict())
        return new.train(layer.training)

    def _feed_forward(self, h: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.ff(h), None  # (B, T, d_model), no weights


class TransformerEncoderLayer(_TransformerLayer):
    """Self-attention + feed-forward, each with residual and LayerNorm: (B, T, d_model) -> (B, T, d_model).

    Defaults are torch's (d_ff=2048, dropout=0.1, relu, post-LN). ``forward`` returns
    ``(x, weights)``, weights (B, H, T, T) when ``need_weights`` else None. With ``is_causal``
    and a ``cache`` it is a GPT-style decoder-only block (see ``DecoderOnlyStack``).
    """

    cross = False
    torch_layer = nn.TransformerEncoderLayer

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, d_model) -> (B, T, d_model), weights (B, H, T, T_k) or None.

        x and the output are (T, B, d_model) when not ``batch_first``; the feed-forward and the
        norms act on each position alone, so only the attention needs to know the layout.
        """

        def self_attention(h):  # (B, T, d_model) -> (B, T, d_model), weights
            return self.self_attn(h, attn_mask=attn_mask, is_causal=is_causal, need_weights=need_weights, cache=cache)

        x, w = sublayer_connection(x, self.norm1, self.dropout1, self.norm_first, self_attention)
        x, _ = sublayer_connection(x, self.norm2, self.dropout2, self.norm_first, self._feed_forward)
        return x, w


class TransformerDecoderLayer(_TransformerLayer):
    """Causal self-attention, attention over memory, feed-forward; residual + LayerNorm around each.

    x (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model). Causal unless ``is_causal=False``.
    With ``need_weights`` the weights are ``(self (B, H, T, T), cross (B, H, T, S))``.
    ``rotary`` applies RoPE in the self-attention only (source and target positions are not comparable).
    """

    cross = True
    torch_layer = nn.TransformerDecoderLayer

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        is_causal: bool = True,
        need_weights: bool = False,
        cache: KVCache | None = None,
        memory_cache: KVCache | None = None,
    ):
        """x (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model), (self, cross) weights or None.

        x, memory and the output are (T, B, d_model), (S, B, d_model) when not ``batch_first``.
        ``cache`` holds the self-attention's keys/values for incremental decoding;
        ``memory_cache`` (a ``KVCache(static=True)``) the projected memory.
        """

        def self_attention(h):  # (B, T, d_model) -> (B, T, d_model), weights
            return self.self_attn(h, attn_mask=attn_mask, is_causal=is_causal, need_weights=need_weights, cache=cache)

        def cross_attention(h):  # (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model), weights
            return self.cross_attn(h, memory, attn_mask=memory_mask, need_weights=need_weights, cache=memory_cache)

        x, w_self = sublayer_connection(x, self.norm1, self.dropout1, self.norm_first, self_attention)
        x, w_cross = sublayer_connection(x, self.norm2, self.dropout2, self.norm_first, cross_attention)
        x, _ = sublayer_connection(x, self.norm3, self.dropout3, self.norm_first, self._feed_forward)
        return x, ((w_self, w_cross) if need_weights else None)


class _LayerStack(nn.Module):
    """``num_layers`` layers of ``layer_class``, then a final LayerNorm if ``final_norm`` (default: with
    pre-LN, whose layers never normalise the residual stream itself). The encoder and decoder stacks."""

    layer_class: type[nn.Module]

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
            self.layer_class(
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


class TransformerEncoder(_LayerStack):
    """``num_layers`` encoder layers, then a final LayerNorm if ``final_norm`` (default: with pre-LN).

    (B, T, d_model) -> (B, T, d_model), and a list of every layer's weights (B, H, T, T) on request.
    Pre-LN layers never normalise the residual stream itself, hence the final norm. ``new_caches()``:
    one key/value cache per layer, for causal incremental decoding (``DecoderOnlyStack``).
    """

    layer_class = TransformerEncoderLayer

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
    ``dropout`` falls where GPT-2 (and nanoGPT) put it: on the attention weights and on each
    sublayer's output before the residual add, not on the MLP's hidden units.
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
        for layer in self.layers:  # GPT-2's MLP is c_fc, gelu, c_proj: its dropout is dropout2, after c_proj
            layer.ff.dropout.p = 0.0

    def forward(self, x, *, attn_mask=None, is_causal: bool = True, need_weights: bool = False, caches=None):
        """x (B, T, d_model) -> (B, T, d_model), [weights (B, H, T, T_k) per layer] or None."""
        return super().forward(x, attn_mask=attn_mask, is_causal=is_causal, need_weights=need_weights, caches=caches)


class TransformerDecoder(_LayerStack):
    """``num_layers`` decoder layers (+ final LayerNorm as in TransformerEncoder).

    x (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model), and a list of every layer's
    (self, cross) weights on request.
    """

    layer_class = TransformerDecoderLayer

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

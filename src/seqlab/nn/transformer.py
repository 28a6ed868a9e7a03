"""The Transformer's layers and stacks ("Attention Is All You Need", section 3.1 and figure 1).

Encoder layer: self-attention, then a position-wise feed-forward network; each sublayer is
wrapped in a residual connection and a layer norm. Decoder layer: masked (causal) self-attention,
attention over the encoder's output ("memory"), then the feed-forward network.

Two places for the norm:

    post-LN (the paper, ``norm_first=False``):  x = LayerNorm(x + Sublayer(x))
    pre-LN  (GPT-2 and later, ``norm_first=True``):  x = x + Sublayer(LayerNorm(x))

Everything is batch-first, (B, T, d_model), except a layer built with ``batch_first=False`` (as
``from_torch`` does for a sequence-first torch layer), which reads and returns (T, B, d_model);
masks and weights keep the batch first either way. Every attention module returns
``(output, weights)``, ``weights`` being None unless ``need_weights=True``; nothing is kept on the module.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import KVCache, MultiHeadAttention

__all__ = [
    "FeedForward",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerDecoder",
    "Transformer",
    "DecoderOnlyStack",
]

# "gelu_tanh": GELU's tanh approximation, the one GPT-2 was trained with (Hugging Face's "gelu_new").
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}


def _activation_name(layer: nn.Module) -> str:
    """'relu' or 'gelu' for a torch Transformer layer's ``activation`` (function or module)."""
    act = layer.activation
    if act is F.relu or type(act) is nn.ReLU:
        return "relu"
    if act is F.gelu or (type(act) is nn.GELU and act.approximate == "none"):
        return "gelu"
    raise ValueError(f"from_torch supports activation relu or gelu, got {act!r}")


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {activation!r}")


class FeedForward(nn.Module):
    """FFN(x) = W_2 dropout(act(W_1 x + b_1)) + b_2, the same at every position: (B, T, d_model) -> (B, T, d_model)."""

    def __init__(self, d_model: int, d_ff: int, *, dropout: float = 0.0, activation: str = "relu", bias: bool = True):
        super().__init__()
        _check_activation(activation)
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(ACTIVATIONS[self.activation](self.linear1(x))))  # (B, T, d_model)


class TransformerEncoderLayer(nn.Module):
    """Self-attention + feed-forward, each with residual and LayerNorm: (B, T, d_model) -> (B, T, d_model).

    Defaults are torch's (d_ff=2048, dropout=0.1, relu, post-LN). ``forward`` returns
    ``(x, weights)``, weights (B, H, T, T) when ``need_weights`` else None. With ``is_causal``
    and a ``cache`` it is a GPT-style decoder-only block (see ``DecoderOnlyStack``).
    """

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
        self.ff = FeedForward(d_model, d_ff, dropout=dropout, activation=activation, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    @property
    def batch_first(self) -> bool:
        """True: x is (B, T, d_model); False: (T, B, d_model), as a sequence-first torch layer's."""
        return self.self_attn.batch_first

    @classmethod
    def from_torch(
        cls, layer: nn.TransformerEncoderLayer, *, batch_first: bool | None = None
    ) -> TransformerEncoderLayer:
        """An equal layer (same numbers, same layout) from ``torch.nn.TransformerEncoderLayer``.

        It takes the layer's layout (``layer.self_attn.batch_first``: (B, T, E) or (T, B, E)) unless
        ``batch_first`` says otherwise. Masks keep seqlab's convention: convert torch's with
        ``masks.from_torch_mha``.
        """
        if not isinstance(layer, nn.TransformerEncoderLayer):
            raise TypeError(f"expected torch.nn.TransformerEncoderLayer, got {type(layer).__name__}")
        new = cls(
            layer.linear1.in_features,
            layer.self_attn.num_heads,
            layer.linear1.out_features,
            dropout=layer.dropout.p,
            activation=_activation_name(layer),
            norm_first=layer.norm_first,
            layer_norm_eps=layer.norm1.eps,
            bias=layer.linear1.bias is not None,
        )
        new.to(device=layer.linear1.weight.device, dtype=layer.linear1.weight.dtype)
        layout = layer.self_attn.batch_first if batch_first is None else batch_first
        new.self_attn = MultiHeadAttention.from_torch(layer.self_attn, batch_first=layout)
        for mine, theirs in (
            (new.ff.linear1, layer.linear1),
            (new.ff.linear2, layer.linear2),
            (new.norm1, layer.norm1),
            (new.norm2, layer.norm2),
        ):
            mine.load_state_dict(theirs.state_dict())
        return new.train(layer.training)

    def _self_attention(self, x, attn_mask, is_causal, need_weights, cache):
        a, w = self.self_attn(x, attn_mask=attn_mask, is_causal=is_causal, need_weights=need_weights, cache=cache)
        return self.dropout1(a), w

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
        if self.norm_first:
            a, w = self._self_attention(self.norm1(x), attn_mask, is_causal, need_weights, cache)
            x = x + a
            x = x + self.dropout2(self.ff(self.norm2(x)))
        else:
            a, w = self._self_attention(x, attn_mask, is_causal, need_weights, cache)
            x = self.norm1(x + a)
            x = self.norm2(x + self.dropout2(self.ff(x)))
        return x, w


class TransformerDecoderLayer(nn.Module):
    """Causal self-attention, attention over memory, feed-forward; residual + LayerNorm around each.

    x (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model). Causal unless ``is_causal=False``.
    With ``need_weights`` the weights are ``(self (B, H, T, T), cross (B, H, T, S))``.
    ``rotary`` applies RoPE in the self-attention only (source and target positions are not comparable).
    """

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
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, bias=bias, batch_first=batch_first)
        self.ff = FeedForward(d_model, d_ff, dropout=dropout, activation=activation, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    @property
    def batch_first(self) -> bool:
        """True: x and memory are (B, T, d_model); False: (T, B, d_model), as a sequence-first torch layer's."""
        return self.self_attn.batch_first

    @classmethod
    def from_torch(
        cls, layer: nn.TransformerDecoderLayer, *, batch_first: bool | None = None
    ) -> TransformerDecoderLayer:
        """An equal layer (same numbers, same layout) from ``torch.nn.TransformerDecoderLayer``.

        It takes the layer's layout (``layer.self_attn.batch_first``: (B, T, E) or (T, B, E)) unless
        ``batch_first`` says otherwise. Masks keep seqlab's convention: convert torch's with
        ``masks.from_torch_mha``.
        """
        if not isinstance(layer, nn.TransformerDecoderLayer):
            raise TypeError(f"expected torch.nn.TransformerDecoderLayer, got {type(layer).__name__}")
        new = cls(
            layer.linear1.in_features,
            layer.self_attn.num_heads,
            layer.linear1.out_features,
            dropout=layer.dropout.p,
            activation=_activation_name(layer),
            norm_first=layer.norm_first,
            layer_norm_eps=layer.norm1.eps,
            bias=layer.linear1.bias is not None,
        )
        new.to(device=layer.linear1.weight.device, dtype=layer.linear1.weight.dtype)
        layout = layer.self_attn.batch_first if batch_first is None else batch_first
        new.self_attn = MultiHeadAttention.from_torch(layer.self_attn, batch_first=layout)
        new.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn, batch_first=layout)
        for mine, theirs in (
            (new.ff.linear1, layer.linear1),
            (new.ff.linear2, layer.linear2),
            (new.norm1, layer.norm1),
            (new.norm2, layer.norm2),
            (new.norm3, layer.norm3),
        ):
            mine.load_state_dict(theirs.state_dict())
        return new.train(layer.training)

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

        def self_block(h):
            a, w = self.self_attn(h, attn_mask=attn_mask, is_causal=is_causal, need_weights=need_weights, cache=cache)
            return self.dropout1(a), w

        def cross_block(h):
            a, w = self.cross_attn(h, memory, attn_mask=memory_mask, need_weights=need_weights, cache=memory_cache)
            return self.dropout2(a), w

        if self.norm_first:
            a, w_self = self_block(self.norm1(x))
            x = x + a
            a, w_cross = cross_block(self.norm2(x))
            x = x + a
            x = x + self.dropout3(self.ff(self.norm3(x)))
        else:
            a, w_self = self_block(x)
            x = self.norm1(x + a)
            a, w_cross = cross_block(x)
            x = self.norm2(x + a)
            x = self.norm3(x + self.dropout3(self.ff(x)))
        return x, ((w_self, w_cross) if need_weights else None)


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

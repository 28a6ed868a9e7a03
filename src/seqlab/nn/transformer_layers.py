"""The Transformer's layers ("Attention Is All You Need", section 3.1 and figure 1); the stacks are in transformer.py.

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

__all__ = ["ACTIVATIONS", "FeedForward", "TransformerDecoderLayer", "TransformerEncoderLayer", "sublayer_connection"]

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


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


def sublayer_connection(
    x: torch.Tensor, norm: nn.LayerNorm, dropout: nn.Dropout, norm_first: bool, sublayer
) -> tuple[torch.Tensor, object]:
    """The residual connection around one sublayer (the Annotated Transformer's ``SublayerConnection``).

    post-LN: LayerNorm(x + dropout(Sublayer(x)));  pre-LN: x + dropout(Sublayer(LayerNorm(x))).
    ``sublayer(h) -> (out, extra)`` (extra: attention weights, or None); returns (x', extra), shapes of x.
    A function, not a module: the norms and dropouts stay the layer's own (``norm1``, ``dropout1``, ...),
    the parameter names of every saved checkpoint and of torch's layers.
    """
    if norm_first:
        out, extra = sublayer(norm(x))
        return x + dropout(out), extra
    out, extra = sublayer(x)
    return norm(x + dropout(out)), extra


def _from_torch_layer(cls, layer: nn.Module, batch_first: bool | None, attentions: dict[str, str]):
    """A ``cls`` layer equal to torch's ``layer``: same sizes, then its attentions (``{mine: theirs}``),
    feed-forward and norms copied; the layout is the layer's unless ``batch_first`` says otherwise."""
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
    for mine, theirs in attentions.items():
        setattr(new, mine, MultiHeadAttention.from_torch(getattr(layer, theirs), batch_first=layout))
    norms = [name for name in ("norm1", "norm2", "norm3") if hasattr(new, name)]
    pairs = [(new.ff.linear1, layer.linear1), (new.ff.linear2, layer.linear2)]
    for mine, theirs in pairs + [(getattr(new, n), getattr(layer, n)) for n in norms]:
        mine.load_state_dict(theirs.state_dict())
    return new.train(layer.training)


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
        return _from_torch_layer(cls, layer, batch_first, {"self_attn": "self_attn"})

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

    def _feed_forward(self, h: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.ff(h), None


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
        return _from_torch_layer(cls, layer, batch_first, {"self_attn": "self_attn", "cross_attn": "multihead_attn"})

    _feed_forward = TransformerEncoderLayer._feed_forward  # (B, T, d_model) -> (B, T, d_model), None

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

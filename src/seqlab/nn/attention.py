"""Multi-head attention, batch-first, with a key/value cache for incremental decoding.

    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O          ("Attention Is All You Need", 3.2.2)

Symbols: B batch, T_q query steps, T_k key steps, H = num_heads, d = d_model, d_h = d / H.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .functional import IMPLS, scaled_dot_product_attention
from .masks import causal_mask, combine, from_ignore_mask
from .positional import RotaryEmbedding

__all__ = ["MultiHeadAttention", "KVCache"]


class KVCache:
    """The projected keys and values (B, H, T_past, d_h) of the steps an attention has seen.

    Self-attention (``static=False``, the default): every call appends the new steps' keys and
    values, so feeding a sequence one token at a time equals one causal pass over all of it.
    Cross-attention (``static=True``): the first call stores the projected memory, later calls
    reuse it instead of projecting the same memory again.

    With ``max_len``, the first call allocates (B, H, max_len, d_h) buffers and later calls write
    into them, so decoding N steps costs no concatenation (N copies of a growing cache);
    ``k`` and ``v`` are then views of the filled part.
    """

    def __init__(self, *, static: bool = False, max_len: int | None = None):
        if max_len is not None and (static or max_len < 1):
            raise ValueError(
                f"max_len preallocates a self-attention cache: needs static=False and max_len >= 1, "
                f"got static={static}, max_len={max_len}"
            )
        self.static, self.max_len = static, max_len
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None  # (B, H, max_len, d_h) each

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, H, T_new, d_h); return all keys and values (B, H, T_past + T_new, d_h)."""
        if self.k is not None and k.shape[0] != self.k.shape[0]:
            raise ValueError(f"cache holds batch size {self.k.shape[0]}, got keys {tuple(k.shape)}")
        if self.max_len is not None:
            return self._write(k, v)
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat((self.k, k), dim=-2)
            self.v = torch.cat((self.v, v), dim=-2)
        return self.k, self.v

    def _write(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        past, T_new = len(self), k.shape[-2]
        if past + T_new > self.max_len:
            raise ValueError(f"the cache has room for max_len={self.max_len} steps: it holds {past}, got {T_new} more")
        if self._buffers is None:
            B, H, _, d_h = k.shape
            self._buffers = (k.new_empty(B, H, self.max_len, d_h), v.new_empty(B, H, self.max_len, v.shape[-1]))
        k_buf, v_buf = self._buffers
        k_buf[:, :, past : past + T_new] = k
        v_buf[:, :, past : past + T_new] = v
        self.k, self.v = k_buf[:, :, : past + T_new], v_buf[:, :, : past + T_new]  # (B, H, past + T_new, d_h)
        return self.k, self.v

    def index_select(self, index: torch.Tensor) -> KVCache:
        """A new cache whose batch row i is this cache's row index[i] (beam search reorders rows)."""
        new = KVCache(static=self.static, max_len=self.max_len)
        if self._buffers is not None:
            L = len(self)
            if 2 * L >= self.max_len:  # mostly filled: one copy of the whole buffers
                new._buffers = tuple(b.index_select(0, index) for b in self._buffers)
            else:  # early in a long generation: same-sized buffers, only the filled part copied
                new._buffers = tuple(b.new_empty((len(index), *b.shape[1:])) for b in self._buffers)
                for dst, src in zip(new._buffers, self._buffers):
                    dst[:, :, :L] = src[:, :, :L].index_select(0, index)
            new.k, new.v = (b[:, :, :L] for b in new._buffers)
        elif self.k is not None:
            new.k, new.v = self.k.index_select(0, index), self.v.index_select(0, index)
        return new

    def reset(self) -> None:
        self.k = self.v = None
        self._buffers = None

    def __repr__(self) -> str:
        room = f", max_len={self.max_len}" if self.max_len is not None else ""
        return f"KVCache(static={self.static}{room}, length={len(self)})"


class MultiHeadAttention(nn.Module):
    """Multi-head attention: query (B, T_q, d_model), key (B, T_k, kdim), value (B, T_k, vdim).

    ``forward`` returns ``(out, weights)``: out (B, T_q, d_model); weights (B, H, T_q, T_k) per
    head when ``need_weights`` (not averaged over heads, unlike torch's default), else None.
    With ``batch_first=False`` (as torch's default) query, key, value and out are (T, B, E)
    instead; weights and masks keep the batch first, as torch's do.

    ``attn_mask`` follows seqlab's convention (bool True = may attend, float added) and may be
    (T_q, T_k), (B, T_q, T_k) or (B or 1, H or 1, T_q, T_k). Padding is part of the mask:
    ``masks.key_padding_mask(lengths)`` is (B, 1, 1, T_k). ``key_padding_mask`` (B, T_k) is also
    accepted with torch's meaning (bool True = ignore that key, float added), so a mask written for
    ``torch.nn.MultiheadAttention`` keeps its meaning here; both masks may be given.

    Extras beyond the lecture: ``rotary`` applies RoPE to queries and keys (self-attention), and
    ``impl`` picks the attention kernel ("auto", "reference" or "fused").
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        rotary: bool = False,
        impl: str = "auto",
        batch_first: bool = True,
    ):
        super().__init__()
        if d_model <= 0 or num_heads <= 0:
            raise ValueError(f"d_model and num_heads must be positive, got d_model={d_model}, num_heads={num_heads}")
        if d_model % num_heads:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by num_heads ({num_heads}): "
                f"each head gets d_model / num_heads features"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, d_model // num_heads
        self.kdim = d_model if kdim is None else kdim
        self.vdim = d_model if vdim is None else vdim
        self.dropout, self.impl, self.batch_first = dropout, impl, batch_first
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W^Q for all heads, side by side
        self.k_proj = nn.Linear(self.kdim, d_model, bias=bias)  # W^K
        self.v_proj = nn.Linear(self.vdim, d_model, bias=bias)  # W^V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O
        self.rotary = RotaryEmbedding(self.head_dim) if rotary else None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # As torch.nn.MultiheadAttention: Xavier-uniform projections, zero biases.
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention, *, batch_first: bool | None = None) -> MultiHeadAttention:
        """An equal seqlab module (same numbers) from ``torch.nn.MultiheadAttention``.

        It takes the same layout as ``module`` (``module.batch_first``) unless ``batch_first`` says
        otherwise. Masks must be converted with ``masks.from_torch_mha``.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"expected torch.nn.MultiheadAttention, got {type(module).__name__}")
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("from_torch does not support add_bias_kv=True or add_zero_attn=True")
        bias = module.in_proj_bias is not None
        new = cls(
            module.embed_dim,
            module.num_heads,
            dropout=module.dropout,
            bias=bias,
            kdim=module.kdim,
            vdim=module.vdim,
            batch_first=module.batch_first if batch_first is None else batch_first,
        )
        ref = module.out_proj.weight
        new.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            if module._qkv_same_embed_dim:
                w_q, w_k, w_v = module.in_proj_weight.chunk(3)  # torch packs [W^Q; W^K; W^V] in one (3d, d)
            else:
                w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
            for proj, w in ((new.q_proj, w_q), (new.k_proj, w_k), (new.v_proj, w_v), (new.out_proj, ref)):
                proj.weight.copy_(w)
            if bias:
                for proj, b in zip((new.q_proj, new.k_proj, new.v_proj), module.in_proj_bias.chunk(3)):
                    proj.bias.copy_(b)
                new.out_proj.bias.copy_(module.out_proj.bias)
        return new.train(module.training)

    def _check_inputs(self, query, key, value):
        """Shapes as given, in this module's layout: (B, T, E), or (T, B, E) when not batch_first."""
        layout = (lambda T: f"(B, {T}") if self.batch_first else (lambda T: f"({T}, B")  # noqa: E731
        if query.dim() != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"expected query {layout('T_q')}, {self.d_model}), got {tuple(query.shape)}")
        if key.dim() != 3 or key.shape[-1] != self.kdim:
            raise ValueError(f"expected key {layout('T_k')}, {self.kdim}), got {tuple(key.shape)}")
        if value.dim() != 3 or value.shape[-1] != self.vdim:
            raise ValueError(f"expected value {layout('T_k')}, {self.vdim}), got {tuple(value.shape)}")
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"key and value must have the same batch size and length: "
                f"key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        b = 0 if self.batch_first else 1
        if key.shape[b] != query.shape[b]:
            raise ValueError(f"query and key batch sizes differ: query {tuple(query.shape)}, key {tuple(key.shape)}")

    def _heads_mask(self, attn_mask, B, T_q, T_k):
        """attn_mask as a 4-D mask broadcastable to (B, H, T_q, T_k), or an error naming both shapes."""
        target = (B, self.num_heads, T_q, T_k)
        m = attn_mask.unsqueeze(1) if attn_mask.dim() == 3 else attn_mask  # (B, T_q, T_k) -> (B, 1, T_q, T_k)
        if attn_mask.dim() not in (2, 3, 4) or any(
            a not in (1, b) for a, b in zip(reversed(m.shape), reversed(target))
        ):
            raise ValueError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not fit (B, heads, T_q, T_k) = {target}: "
                "expected (T_q, T_k), (B, T_q, T_k) or (B, heads, T_q, T_k) (size-1 dims broadcast)"
            )
        return m

    @staticmethod
    def _padding_mask(key_padding_mask, B, T_k):
        """torch's key_padding_mask (B, T_k), True = ignore, as a seqlab mask (B, 1, 1, T_k), True = attend."""
        if key_padding_mask.shape != (B, T_k):
            raise ValueError(f"key_padding_mask must be (B, T_k) = {(B, T_k)}, got {tuple(key_padding_mask.shape)}")
        if key_padding_mask.dtype != torch.bool and not key_padding_mask.is_floating_point():
            raise TypeError(
                f"key_padding_mask must be bool (True = ignore, as torch's) or float (added), "
                f"got {key_padding_mask.dtype}"
            )
        return from_ignore_mask(key_padding_mask)[:, None, None, :]  # (B, 1, 1, T_k)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T_q, d_model) [, (B, T_k, kdim), (B, T_k, vdim)] -> (B, T_q, d_model), (B, H, T_q, T_k) | None.

        (T, B, E) for the inputs and the output when not ``batch_first``. ``key`` defaults to
        ``query`` (self-attention) and ``value`` to ``key``. With a ``cache``, the new
        keys/values are appended to it and the queries attend to all cached steps;
        ``is_causal`` then means "not beyond the query's own position". ``key_padding_mask``
        (B, T_k) is torch's: True (or -inf) marks a key to ignore; T_k counts cached keys too.
        """
        key = query if key is None else key
        value = key if value is None else value
        self._check_inputs(query, key, value)
        if not self.batch_first:  # (T, B, E) -> (B, T, E); the output goes back at the end
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        B, T_q, _ = query.shape
        H, d_h = self.num_heads, self.head_dim

        q = self.q_proj(query).view(B, T_q, H, d_h).transpose(1, 2)  # (B, H, T_q, d_h)
        past = 0 if cache is None or cache.static else len(cache)
        if cache is not None and cache.static and len(cache):
            k, v = cache.k, cache.v  # projected memory, stored on the first call
        else:
            T_new = key.shape[1]
            k = self.k_proj(key).view(B, T_new, H, d_h).transpose(1, 2)  # (B, H, T_new, d_h)
            v = self.v_proj(value).view(B, T_new, H, d_h).transpose(1, 2)  # (B, H, T_new, d_h)
            if self.rotary is not None:
                k = self.rotary(k, offset=past)
            if cache is not None:
                k, v = cache.update(k, v)  # (B, H, past + T_new, d_h)
        if self.rotary is not None:
            q = self.rotary(q, offset=past)
        T_k = k.shape[2]

        if attn_mask is not None:
            attn_mask = self._heads_mask(attn_mask, B, T_q, T_k)
        if key_padding_mask is not None:
            attn_mask = combine(attn_mask, self._padding_mask(key_padding_mask, B, T_k))
        if is_causal and past:
            # New queries sit at positions past .. past + T_q - 1 among the keys (bottom-right aligned);
            # a single new query may see every cached key, so it needs no mask at all.
            if T_q > 1:
                attn_mask = combine(causal_mask(T_q, T_k, offset=past, device=q.device), attn_mask)
            is_causal = False

        dropout_p = self.dropout if self.training else 0.0
        result = scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=dropout_p,
            impl="reference" if need_weights else self.impl,
            return_weights=need_weights,
        )
        out, weights = result if need_weights else (result, None)  # (B, H, T_q, d_h), (B, H, T_q, T_k)
        out = out.transpose(1, 2).reshape(B, T_q, self.d_model)  # (B, T_q, d_model): heads concatenated
        out = self.out_proj(out)  # (B, T_q, d_model)
        return (out if self.batch_first else out.transpose(0, 1)), weights  # (T_q, B, d_model) if not batch_first

    def extra_repr(self) -> str:
        extra = f"d_model={self.d_model}, num_heads={self.num_heads}, dropout={self.dropout}"
        if self.kdim != self.d_model or self.vdim != self.d_model:
            extra += f", kdim={self.kdim}, vdim={self.vdim}"
        extra += f", impl={self.impl!r}" if self.impl != "auto" else ""
        return extra + (", batch_first=False" if not self.batch_first else "")

"""Attention masks, in seqlab's one convention.

**A boolean mask is True where a query may attend to a key; a float mask is added to the scores.**

This is the convention of ``torch.nn.functional.scaled_dot_product_attention``. Masks are
broadcast against the scores of shape (B, heads, T_q, T_k), so

- a causal mask is (T_q, T_k),
- a key-padding mask is (B, 1, 1, T_k) (the same keys are hidden from every head and query),
- anything in between, e.g. (B, 1, T_q, T_k), works as long as it broadcasts.

``torch.nn.MultiheadAttention`` and ``nn.Transformer*`` use the opposite boolean convention
(True = ignore) and a separate ``key_padding_mask``; :func:`from_torch_mha` converts. seqlab's
``MultiHeadAttention.forward`` also takes ``key_padding_mask`` itself, with torch's meaning
(True = ignore), so a torch-style padding mask is never read as an ``attn_mask``. A query
whose keys are all masked gets an output of zeros (never NaN) from every seqlab attention.

See ``docs/attention.md`` for a picture.
"""

from __future__ import annotations

import torch

__all__ = [
    "causal_mask",
    "padding_mask",
    "key_padding_mask",
    "combine",
    "to_float",
    "from_ignore_mask",
    "from_torch_mha",
]


def causal_mask(T_q: int, T_k: int | None = None, *, offset: int = 0, device=None) -> torch.Tensor:
    """(T_q, T_k) bool, True where key j <= query i + offset: no query sees the future.

    ``offset`` is the position of the first query among the keys. With ``offset=0`` (the default)
    the mask is top-left aligned like ``is_causal=True`` in torch; when decoding with a key/value
    cache of P earlier tokens, the new queries sit at positions P, P+1, ..., so ``offset=P``.
    """
    T_k = T_q if T_k is None else T_k
    i = torch.arange(T_q, device=device).unsqueeze(1)  # (T_q, 1)
    j = torch.arange(T_k, device=device).unsqueeze(0)  # (1, T_k)
    return j <= i + offset  # (T_q, T_k)


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B, T) bool, True at the first ``lengths[b]`` positions of row b (the real tokens)."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    T = int(lengths.max()) if max_len is None else max_len
    # A traced graph (torch.export, ONNX export) cannot branch on a tensor's value: the check is the eager caller's.
    if not torch.compiler.is_compiling() and len(lengths) and int(lengths.max()) > T:
        raise ValueError(f"max_len={T} is shorter than the longest sequence ({int(lengths.max())})")
    return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


def key_padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B, 1, 1, T_k) bool: every head and every query may attend only to real (unpadded) keys."""
    return padding_mask(lengths, max_len)[:, None, None, :]  # (B, 1, 1, T_k)


def to_float(mask: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """A bool mask as an additive float mask: 0 where allowed, -inf where not. Floats pass through."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def combine(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """One mask that allows what every given mask allows; ``None`` entries are skipped.

    Bool masks are combined with AND; if any mask is float, all are made additive and summed.
    The result broadcasts the shapes, e.g. causal (T, T) and key padding (B, 1, 1, T) give
    (B, 1, T, T).
    """
    given = [m for m in masks if m is not None]
    if not given:
        return None
    if all(m.dtype == torch.bool for m in given):
        out = given[0]
        for m in given[1:]:
            out = out & m
        return out
    dtype = next(m.dtype for m in given if m.dtype != torch.bool)
    out = to_float(given[0], dtype)
    for m in given[1:]:
        out = out + to_float(m, dtype)
    return out


def from_ignore_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Convert a torch.nn.MultiheadAttention-style bool mask (True = ignore) to seqlab's (True = attend).

    Float masks are additive in both conventions and are returned unchanged.
    """
    if mask is None or mask.dtype != torch.bool:
        return mask
    return ~mask


def from_torch_mha(
    attn_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    *,
    num_heads: int | None = None,
) -> torch.Tensor | None:
    """The seqlab mask equal to torch.nn.MultiheadAttention's ``attn_mask`` and ``key_padding_mask``.

    torch's ``attn_mask`` is (T_q, T_k) or (B * num_heads, T_q, T_k), bool True = ignore or float
    added; its ``key_padding_mask`` is (B, T_k), True = ignore. The result broadcasts to
    (B, heads, T_q, T_k) with True = may attend (or is float, added).
    """
    out_attn = from_ignore_mask(attn_mask)
    if out_attn is not None and out_attn.dim() == 3:
        if num_heads is None:
            raise ValueError(
                f"a 3-D torch attn_mask {tuple(attn_mask.shape)} is (B * num_heads, T_q, T_k): pass num_heads"
            )
        BH, T_q, T_k = out_attn.shape
        if BH % num_heads:
            raise ValueError(f"attn_mask first dim {BH} is not a multiple of num_heads={num_heads}")
        out_attn = out_attn.view(BH // num_heads, num_heads, T_q, T_k)  # (B, heads, T_q, T_k)
    out_pad = from_ignore_mask(key_padding_mask)
    if out_pad is not None:
        if out_pad.dim() != 2:
            raise ValueError(f"key_padding_mask must be (B, T_k), got shape {tuple(key_padding_mask.shape)}")
        out_pad = out_pad[:, None, None, :]  # (B, 1, 1, T_k)
    return combine(out_attn, out_pad)

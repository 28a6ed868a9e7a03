"""Scaled dot-product attention: the lecture's reference formula and torch's fused kernel, one contract.

    Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k) + M) V

Shapes (any number of leading batch dims ``*``, usually (B, heads)):

    query (*, T_q, d_k), key (*, T_k, d_k), value (*, T_k, d_v)  ->  out (*, T_q, d_v)
    weights (*, T_q, T_k)

Mask convention (the same everywhere in seqlab, see ``seqlab.nn.masks``): a bool ``attn_mask``
is True where a query may attend; a float mask is added to the scores. It must broadcast to
(*, T_q, T_k). A query row whose keys are all masked returns zeros, never NaN, in both paths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .masks import causal_mask, combine

__all__ = ["scaled_dot_product_attention"]

IMPLS = ("auto", "reference", "fused")


def _check(query, key, value, attn_mask, impl, return_weights):
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
    if impl == "fused" and return_weights:
        raise ValueError("impl='fused' cannot return the attention weights: use impl='reference' or 'auto'")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() < 2:
            raise ValueError(f"{name} must be (*, T, d), got shape {tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key must share d_k (last dim): query {tuple(query.shape)}, key {tuple(key.shape)}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value must have the same length T_k (dim -2): key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    if not (query.shape[:-2] == key.shape[:-2] == value.shape[:-2]):
        raise ValueError(
            f"query, key and value must have the same batch dims: query {tuple(query.shape)}, "
            f"key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    if attn_mask is not None:
        scores_shape = (*query.shape[:-1], key.shape[-2])  # (*, T_q, T_k)
        ok = attn_mask.dim() <= len(scores_shape) and all(
            m in (1, s) for m, s in zip(reversed(attn_mask.shape), reversed(scores_shape))
        )
        if not ok:
            raise ValueError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores' shape "
                f"(*, T_q, T_k) = {tuple(scores_shape)}"
            )
        if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
            raise TypeError(f"attn_mask must be bool (True = may attend) or float (added), got {attn_mask.dtype}")


def _open_empty_rows(mask: torch.Tensor):
    """Find query rows with no key to attend to; return a mask where they attend everywhere, and the rows.

    softmax over a row of -inf is 0/0 = NaN, forward and backward. Opening such rows keeps every
    intermediate finite; the caller then zeroes their outputs (and weights), so the row's answer
    is 0 and no gradient flows through it.
    """
    if mask.dtype == torch.bool:
        empty = ~mask.any(dim=-1, keepdim=True)  # (*, T_q, 1)
        return mask | empty, empty
    empty = torch.isneginf(mask).all(dim=-1, keepdim=True)  # (*, T_q, 1)
    return mask.masked_fill(empty, 0.0), empty


def _reference(q, k, v, attn_mask, dropout_p, scale):
    """softmax(q kᵀ * scale + mask) v, written out; returns (out, weights before dropout)."""
    scores = q @ k.transpose(-2, -1) * scale  # (*, T_q, T_k)
    empty = None
    if attn_mask is not None:
        attn_mask, empty = _open_empty_rows(attn_mask)
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = torch.softmax(scores, dim=-1)  # (*, T_q, T_k), each row sums to 1
    if empty is not None:
        weights = weights.masked_fill(empty, 0.0)  # rows with nothing to attend to: 0, not NaN
    attn = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    out = attn @ v  # (*, T_q, d_v)
    return out, weights


def _fused(q, k, v, attn_mask, is_causal, dropout_p, scale):
    if attn_mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    # torch's kernels may return NaN for a row with no visible key (backend- and version-dependent),
    # so give them rows that always see something and zero those rows afterwards.
    attn_mask, empty = _open_empty_rows(attn_mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
    return out.masked_fill(empty, 0.0)  # (*, T_q, d_v)


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    impl: str = "auto",
    return_weights: bool = False,
):
    """softmax(query keyᵀ / sqrt(d_k) + attn_mask) value: (*, T_q, d_k), (*, T_k, d_k), (*, T_k, d_v) -> (*, T_q, d_v).

    - ``attn_mask``: bool (True = may attend) or float (added to the scores), broadcastable to
      (*, T_q, T_k).
    - ``is_causal``: query i sees keys j <= i (top-left aligned, as torch's ``is_causal``). May be
      combined with ``attn_mask`` (both must allow a key), which torch's function does not allow.
    - ``dropout_p``: dropout on the attention weights; pass 0 in eval mode.
    - ``scale``: defaults to 1 / sqrt(d_k).
    - ``impl``: ``"reference"`` computes the formula with matmul and softmax; ``"fused"`` calls
      ``torch.nn.functional.scaled_dot_product_attention``; ``"auto"`` uses the fused kernel
      unless the weights are asked for.
    - ``return_weights``: also return the softmax weights (*, T_q, T_k), before dropout.

    Returns ``out``, or ``(out, weights)`` when ``return_weights``. Rows whose keys are all masked
    give zeros (outputs and weights).
    """
    _check(query, key, value, attn_mask, impl, return_weights)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if attn_mask is not None and attn_mask.is_floating_point() and attn_mask.dtype != query.dtype:
        attn_mask = attn_mask.to(query.dtype)
    if is_causal and attn_mask is not None:
        T_q, T_k = query.shape[-2], key.shape[-2]
        attn_mask = combine(causal_mask(T_q, T_k, device=query.device), attn_mask)
        is_causal = False
    if impl == "fused" or (impl == "auto" and not return_weights):
        return _fused(query, key, value, attn_mask, is_causal, dropout_p, scale)
    if is_causal:
        attn_mask = causal_mask(query.shape[-2], key.shape[-2], device=query.device)
    out, weights = _reference(query, key, value, attn_mask, dropout_p, scale)
    return (out, weights) if return_weights else out

"""Positional encodings: attention is order-blind, these put the order back.

- sinusoidal ("Attention Is All You Need", section 3.5), added to the token embeddings:
      PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
      PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))
- learned: one trained vector per position, added.
- rotary (RoPE, Su et al. 2021, "RoFormer"): rotate each pair (x_2i, x_2i+1) of a query or key
  by the angle pos * theta_i, theta_i = base^(-2i / d). Then q_m · k_n depends on m - n only.

Every module takes (B, T, C) (rotary: (*, T, head_dim)) and an ``offset``, the position of the
first step, for incremental decoding. The constructors take the width first and the rest by
keyword: ``SinusoidalPositionalEncoding(d_model, max_len=...)``, ``LearnedPositionalEncoding(d_model,
max_len=...)``, ``RotaryEmbedding(head_dim)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = [
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEncoding",
    "RotaryEmbedding",
    "apply_rotary",
]


def sinusoidal_encoding(max_len: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """(max_len, d_model): PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(same)."""
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)  # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(d/2),)
    angle = pos / base ** (two_i / d_model)  # (max_len, ceil(d/2))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.float()


def _check_length(T: int, offset: int, max_len: int, what: str) -> None:
    if offset + T > max_len:
        raise ValueError(f"{what}: positions {offset}..{offset + T - 1} exceed max_len={max_len}")


class SinusoidalPositionalEncoding(nn.Module):
    """x + PE[offset : offset + T]: (B, T, d_model) -> (B, T, d_model), then dropout."""

    def __init__(self, d_model: int, *, max_len: int = 5000, dropout: float = 0.0):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)
        # Not persistent: it is a function of (max_len, d_model), so checkpoints need not carry it.
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        if C != self.d_model:
            raise ValueError(f"expected input (B, T, {self.d_model}), got {tuple(x.shape)}")
        _check_length(T, offset, self.max_len, type(self).__name__)
        return self.dropout(x + self.pe[offset : offset + T].to(x.dtype))  # (B, T, d_model)


class LearnedPositionalEncoding(nn.Module):
    """x + P[offset : offset + T], P a trained (max_len, d_model) table: (B, T, d_model) -> same."""

    def __init__(self, d_model: int, *, max_len: int, dropout: float = 0.0):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.weight = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.normal_(self.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        if C != self.d_model:
            raise ValueError(f"expected input (B, T, {self.d_model}), got {tuple(x.shape)}")
        _check_length(T, offset, self.max_len, type(self).__name__)
        return self.dropout(x + self.weight[offset : offset + T])  # (B, T, d_model)


def rotary_angles(
    positions: torch.Tensor, d: int, base: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos(m θ_i) and sin(m θ_i), θ_i = base^(-2i/d), for each position m: two (T, d/2) tensors in ``dtype``."""
    theta = base ** (-torch.arange(0, d, 2, device=positions.device, dtype=dtype) / d)  # (d/2,)
    angle = positions.to(dtype).unsqueeze(-1) * theta  # (T, d/2)
    return angle.cos(), angle.sin()


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x_2i, x_2i+1) of x (*, T, d) by the angles whose cos and sin are given, (T, d/2) each.

    x'_2i   = x_2i cos(m θ_i) - x_2i+1 sin(m θ_i)
    x'_2i+1 = x_2i sin(m θ_i) + x_2i+1 cos(m θ_i)
    """
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (*, T, d/2) each
    rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)  # (*, T, d/2, 2)
    return rotated.flatten(-2)  # (*, T, d), pairs interleaved back


def _angle_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)  # angles in at least float32, even for half inputs


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate pairs (x_2i, x_2i+1) of x (*, T, d) by positions[t] * base^(-2i/d); d must be even."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"rotary embeddings rotate pairs of features: last dim must be even, got {tuple(x.shape)}")
    cos, sin = rotary_angles(positions, d, base, _angle_dtype(x))
    return rotate_pairs(x, cos.to(x.dtype), sin.to(x.dtype))


class RotaryEmbedding(nn.Module):
    """RoPE for queries and keys (*, T, head_dim): forward(x, offset) rotates step t by (offset + t) θ.

    The cos and sin of positions 0..L-1 are computed once per device and dtype and grown when a longer
    sequence comes (decoding with a cache asks for one position per step); the values are those of
    :func:`apply_rotary`, bit for bit."""

    def __init__(self, head_dim: int, *, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding needs an even head_dim, got {head_dim}")
        self.head_dim, self.base = head_dim, base
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _cos_sin(self, end: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) for positions 0..end-1 at least, (L, head_dim/2) each, from the table."""
        table = self._tables.get((device, dtype))
        if table is None or table[0].shape[0] < end:
            length = max(end, 2 * table[0].shape[0] if table is not None else 64)
            # Plain tensors even under inference_mode, so that a later training step can save them for backward.
            with torch.inference_mode(False), torch.no_grad():
                table = rotary_angles(torch.arange(length, device=device), self.head_dim, self.base, dtype)
            self._tables[(device, dtype)] = table
        return table

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"expected (*, T, {self.head_dim}), got {tuple(x.shape)}")
        T = x.shape[-2]
        if torch.compiler.is_compiling():  # no table kept inside a compiled graph
            return apply_rotary(x, torch.arange(offset, offset + T, device=x.device), self.base)
        cos, sin = self._cos_sin(offset + T, x.device, _angle_dtype(x))
        return rotate_pairs(x, cos[offset : offset + T].to(x.dtype), sin[offset : offset + T].to(x.dtype))

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"

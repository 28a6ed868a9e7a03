"""Attention over encoder states for recurrent seq2seq models: score, softmax, context.

A decoder state q (the query) scores every encoder state k_s (the keys), the scores become
weights by a softmax over the real (unpadded) source positions, and the context is the
weighted mean of the values (the encoder states again):

    additive (Bahdanau et al. 2015, eq. 6; Luong's "concat"):  score(q, k_s) = vᵀ tanh(W_q q + W_k k_s)
    dot      (Luong et al. 2015, eq. 8):                         score(q, k_s) = qᵀ k_s
    general  (Luong et al. 2015, eq. 8):                         score(q, k_s) = qᵀ W_a k_s

    α_s = softmax_s(score(q, k_s)),   c = Σ_s α_s v_s

The key side of each score does not depend on the query, so ``prepare(keys)`` computes it once
per source sentence (W_k k_s, or W_a k_s) and every decoder step reuses it.

Shapes: queries (B, D_q) for one decoder step or (B, T, D_q) for T of them; keys and values
(B, S, D_k); mask (B, S) bool, True at real source positions. Out: context (B, [T,] D_k) and
weights (B, [T,] S), each row summing to 1 (0 everywhere for a row with no real position).
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SCORES", "AdditiveScore", "DotScore", "GeneralScore", "Alignment"]


class AdditiveScore(nn.Module):
    """score(q, k_s) = vᵀ tanh(W_q q + W_k k_s): an MLP with one hidden layer of ``attention_size`` units."""

    def __init__(self, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.w_q = nn.Linear(query_size, attention_size, bias=False)
        self.w_k = nn.Linear(key_size, attention_size, bias=True)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        return self.w_k(keys)  # (B, S, A)

    def forward(self, query: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        """query (B, T, D_q), prepared W_k k (B, S, A) -> scores (B, T, S)."""
        h = torch.tanh(self.w_q(query).unsqueeze(2) + prepared.unsqueeze(1))  # (B, T, S, A)
        return self.v(h).squeeze(-1)  # (B, T, S)


class DotScore(nn.Module):
    """score(q, k_s) = qᵀ k_s (no parameters; the query and key sizes must be equal)."""

    def __init__(self, query_size: int, key_size: int, attention_size: int = 0):
        super().__init__()
        if query_size != key_size:
            raise ValueError(f"dot attention needs equal query and key sizes, got {query_size} and {key_size}")

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        return keys  # (B, S, D)

    def forward(self, query: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        """query (B, T, D), keys (B, S, D) -> scores (B, T, S)."""
        return query @ prepared.transpose(1, 2)  # (B, T, S)


class GeneralScore(nn.Module):
    """score(q, k_s) = qᵀ W_a k_s, a bilinear form; ``prepare`` computes W_a k_s once."""

    def __init__(self, query_size: int, key_size: int, attention_size: int = 0):
        super().__init__()
        self.w_a = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        return self.w_a(keys)  # (B, S, D_q)

    def forward(self, query: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        """query (B, T, D_q), prepared W_a k (B, S, D_q) -> scores (B, T, S)."""
        return query @ prepared.transpose(1, 2)  # (B, T, S)


SCORES = {"additive": AdditiveScore, "dot": DotScore, "general": GeneralScore}


class Alignment(nn.Module):
    """Score the keys, softmax over the real positions, average the values: see the module docstring.

    ``Alignment("additive", query_size=H, key_size=H, attention_size=H)``; ``forward`` returns
    ``(context, weights)``. Pass ``prepared=alignment.prepare(keys)`` to reuse the key side of
    the score over many decoder steps.
    """

    def __init__(self, score: str, *, query_size: int, key_size: int, attention_size: int = 0):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(map(repr, SCORES))}, got {score!r}")
        if score == "additive" and attention_size < 1:
            raise ValueError(f"additive attention needs attention_size >= 1, got {attention_size}")
        self.score_name = score
        self.score = SCORES[score](query_size, key_size, attention_size)

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        """The query-independent part of the score for keys (B, S, D_k)."""
        return self.score.prepare(keys)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        prepared: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, D_q) or (B, T, D_q), keys (B, S, D_k), values (B, S, D_v) (default: keys),
        mask (B, S) bool True = real -> context (B, [T,] D_v), weights (B, [T,] S)."""
        values = keys if values is None else values
        one_step = query.dim() == 2
        q = query.unsqueeze(1) if one_step else query  # (B, T, D_q)
        prepared = self.prepare(keys) if prepared is None else prepared
        scores = self.score(q, prepared)  # (B, T, S)
        if mask is not None:
            if mask.shape != (keys.shape[0], keys.shape[1]):
                raise ValueError(f"mask must be (B, S) = {tuple(keys.shape[:2])}, got {tuple(mask.shape)}")
            m = mask.unsqueeze(1)  # (B, 1, S)
            empty = ~m.any(-1, keepdim=True)  # (B, 1, 1): a row with no real position
            scores = scores.masked_fill(~(m | empty), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, S)
        if mask is not None:
            weights = weights.masked_fill(empty, 0.0)  # nothing to attend to: zeros, never NaN
        context = weights @ values  # (B, T, D_v)
        if one_step:
            return context.squeeze(1), weights.squeeze(1)  # (B, D_v), (B, S)
        return context, weights

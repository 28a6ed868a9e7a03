"""Logit processors and sampling filters: (R, V) logits in, (R, V) logits out, -inf where a token is ruled out.

R is the number of rows decoded together (batch x beams, or batch x samples), V the vocabulary.
``context`` is (R, L): the token ids each row has seen so far (a language model's prompt and
its generated tokens; a translation's generated tokens), which the repetition rules read.
"""

from __future__ import annotations

import torch

__all__ = ["repetition_penalty", "no_repeat_ngram", "ban", "top_k", "top_p", "min_p"]

NEG_INF = float("-inf")


def repetition_penalty(logits: torch.Tensor, context: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019) on every token in the row's context.

        z_v <- z_v / penalty   if z_v > 0
        z_v <- z_v * penalty   if z_v <= 0

    so with penalty > 1 a seen token's logit moves down whatever its sign (dividing a negative
    logit, as a naive ``z / penalty`` does, would *raise* it). Each token is penalised once,
    however often it was seen.
    """
    if penalty == 1.0 or context.shape[1] == 0:
        return logits
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, context, True)  # (R, V)
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)  # (R, V)
    return torch.where(seen, penalised, logits)


def no_repeat_ngram(logits: torch.Tensor, context: torch.Tensor, n: int) -> torch.Tensor:
    """Rule out every token that would complete an n-gram already in the row's context.

    With context c_1..c_L, token v is banned when (c_{L-n+2}, ..., c_L, v) equals some
    (c_i, ..., c_{i+n-1}) of the context (for n = 1: when v is in the context at all).
    """
    R, L = context.shape
    if n <= 0 or L < n - 1 or L == 0:
        return logits
    if n == 1:
        banned = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, context, True)  # (R, V)
        return logits.masked_fill(banned, NEG_INF)
    if L < n:  # no complete n-gram yet
        return logits
    grams = context.unfold(1, n, 1)  # (R, L - n + 1, n): every n-gram of the context
    prefix = context[:, L - n + 1 :]  # (R, n - 1): the last n - 1 tokens
    match = (grams[:, :, :-1] == prefix[:, None, :]).all(-1)  # (R, L - n + 1): n-grams starting like that
    counts = torch.zeros_like(logits).scatter_add_(1, grams[:, :, -1], match.to(logits.dtype))  # (R, V)
    return logits.masked_fill(counts > 0, NEG_INF)


def ban(logits: torch.Tensor, ids) -> torch.Tensor:
    """Rule out the token ids ``ids`` (a list, tuple or LongTensor) in every row."""
    if len(ids) == 0:
        return logits
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    mask[torch.as_tensor(ids, dtype=torch.long, device=logits.device)] = True  # (V,)
    return logits.masked_fill(mask, NEG_INF)


def _sorted_desc(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits sorted high to low, equal logits in increasing token id (a stable sort), and their ids."""
    return torch.sort(logits, dim=-1, descending=True, stable=True)


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly min(k, V) tokens per row: the k largest logits.

    When logits tie across the k-th place, the tokens with the LOWER ids are kept (a stable
    descending sort), so exactly k survive; ``logits >= kth_value`` would keep every tied one.
    """
    V = logits.shape[-1]
    if k <= 0 or k >= V:
        return logits
    _, order = _sorted_desc(logits)  # (R, V)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, order[:, :k], True)  # (R, V)
    return logits.masked_fill(~keep, NEG_INF)


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the smallest set of most probable tokens
    whose probability reaches p. A token is kept when the probability of the tokens ranked above
    it is still below p, so the token that crosses p is in and nothing after it is. Ties: lower
    ids rank first. Probabilities are summed in float64, so the boundary is not decided by float32
    rounding.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = _sorted_desc(logits)  # (R, V)
    probs = torch.softmax(sorted_logits.double(), dim=-1)  # (R, V) float64
    before = probs.cumsum(-1) - probs  # (R, V): probability ranked above each token
    keep_sorted = before < p
    keep_sorted[:, 0] = True  # the most probable token always stays
    keep = torch.zeros_like(keep_sorted).scatter_(1, order, keep_sorted)  # back to vocabulary order
    return logits.masked_fill(~keep, NEG_INF)


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Min-p filtering (Nguyen et al. 2024): keep tokens with P(v) >= p * max_v' P(v').

    Computed in log space: log P(v) >= log p + log P_max, i.e. z_v >= z_max + log p.
    """
    if p <= 0.0:
        return logits
    z_max = logits.max(dim=-1, keepdim=True).values  # (R, 1)
    keep = logits >= z_max + torch.log(torch.tensor(p, dtype=logits.dtype, device=logits.device))  # (R, V)
    return logits.masked_fill(~keep, NEG_INF)

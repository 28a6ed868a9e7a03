"""The loss of every token-level model: cross-entropy over real tokens, with optional label smoothing.

Label smoothing (Szegedy et al. 2016; "Attention Is All You Need", 5.4) trains against
q = (1 - ε) one_hot(y) + ε / V instead of the one-hot target:

    loss = (1 - ε) (-log p_y) + ε · mean_v (-log p_v)

Padding positions (``ignore_index``) count neither in the sum nor in the mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["token_cross_entropy"]


def token_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int | None = 0, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy per real target token: logits (*, V), targets (*) ids -> scalar.

    ``ignore_index`` (the pad id, default 0; None: every position counts) marks positions left
    out of the mean. ``label_smoothing`` ε in [0, 1). Models pass ε only while training, so
    that validation and test losses are the plain negative log-likelihood (nats per token).
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits (*, V) and targets (*) must agree on *: got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    V = logits.size(-1)
    return F.cross_entropy(
        logits.reshape(-1, V),
        targets.reshape(-1),  # (N, V), (N,) with N = prod(*)
        ignore_index=-100 if ignore_index is None else ignore_index,
        label_smoothing=label_smoothing,
    )

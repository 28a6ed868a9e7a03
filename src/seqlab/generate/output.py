"""What ``generate`` gives back (the sequences with their lengths and scores), the warning for a long prompt,
the GNMT length penalty, and the trace that follows attention weights back."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ContextTooLong", "GenerationOutput", "length_penalty"]


class ContextTooLong(UserWarning):
    """A prompt longer than the model's context was cut from the left."""


@dataclass
class GenerationOutput:
    """What ``generate`` returns. M = B * num_return_sequences rows: input b's are rows b*n .. b*n + n - 1, best first.

    - sequences (M, T): generated ids only (no prompt, no <bos>), padded after the end with the
      model's pad id (0 when it has none); T <= max_new_tokens.
    - lengths (M,): tokens generated, <eos> included.
    - scores (M,): what ranks the sequences: beam search's length-normalised score (see
      ``length_penalty``), otherwise the same as log_probs.
    - log_probs (M,): sum of log P(y_t | y_<t, x) under the model's own distribution (before
      processors, temperature and filters), <eos> included.
    - token_log_probs (M, T): the terms of that sum, 0 after the end.
    - finished (M,): True where the sequence ended by <eos> or a stop string (False: it ran to
      max_new_tokens).
    - attentions: with ``output_attentions``, per row a list over steps of the model's weights
      dict for that row (e.g. {"cross": (heads, S), "self": [(heads, t) per layer]}); else None.
    """

    sequences: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor
    log_probs: torch.Tensor
    token_log_probs: torch.Tensor
    finished: torch.Tensor
    attentions: list | None
    num_return_sequences: int


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14); beam scores are log P / lp."""
    return ((5.0 + length) / 6.0) ** alpha


def _pick(weights, row: int):
    """Row ``row`` of every tensor in a nested dict/list of weights."""
    if isinstance(weights, torch.Tensor):
        return weights[row]
    if isinstance(weights, dict):
        return {k: _pick(v, row) for k, v in weights.items()}
    if isinstance(weights, (list, tuple)):
        return [_pick(v, row) for v in weights]
    return weights


class _Trace:
    """Each step's attention weights and where its rows came from, to follow one row back to step 0."""

    def __init__(self):
        self.steps: list = []  # (weights of step t's rows, parents: row at t -> row at t - 1, or None = same)

    def add(self, weights, parents: torch.Tensor | None) -> None:
        self.steps.append((weights, None if parents is None else parents.tolist()))

    def back(self, step: int, row: int) -> list:
        out = []
        for t in range(step, -1, -1):
            weights, parents = self.steps[t]
            out.append(_pick(weights, row))
            if parents is not None:
                row = parents[row]
        return out[::-1]

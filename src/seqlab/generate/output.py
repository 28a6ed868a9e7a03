"""What ``generate`` gives back: the sequences with their lengths and scores, and the warning for a long prompt."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ContextTooLong", "GenerationOutput"]


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

"""The incremental-decoding contract shared by every model that writes tokens one at a time.

A model that implements :class:`IncrementalDecoder` (``seq2seq_rnn``, ``seq2seq_transformer``,
``gpt``, ``rnn_lm``) is decoded by ``seqlab.generate``: greedy, sampling and beam search, the one
decoder of ``seqlab eval``, ``seqlab generate`` and the report page.
The search never looks inside the state; the model alone knows what it holds (key/value caches,
recurrent state, encoder memory and its padding mask).

What a search does with it, for a batch of B rows (greedy, written out)::

    state, tokens = model.begin_decoding(source=..., source_lengths=..., max_new_tokens=N)
    for _ in range(N):
        logits, state, _ = model.decode_step(state, tokens)   # logits (B, V)
        tokens = logits.argmax(-1)                            # (B,)

Cached decoding equals the full, uncached forward on the same prefix (tested to 1e-5 per model).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["DecodeState", "IncrementalDecoder"]


class DecodeState(Protocol):
    """Whatever a model needs to take the next step (caches, RNN state, memory); opaque to searches."""


@runtime_checkable
class IncrementalDecoder(Protocol):
    """A model that predicts a next token, decoded one step at a time."""

    vocab_size: int  # size of the output distribution

    def begin_decoding(
        self,
        *,
        source: torch.Tensor | None = None,
        source_lengths: torch.Tensor | None = None,
        prompt: torch.Tensor | None = None,
        max_new_tokens: int,
    ) -> tuple[DecodeState, torch.Tensor]:
        """Encode the source (seq2seq: source (B, S) ids, source_lengths (B,)) or read the prompt
        (LM: prompt (B, P) ids, P >= 1, all rows the same length) and return (state, first (B,)),
        ``first`` being the tokens to feed to the first decode_step: <bos> for seq2seq, the prompt's
        last token for a LM (begin_decoding has consumed prompt[:, :-1]). State has room for
        max_new_tokens more steps (Transformers preallocate their key/value caches for it)."""
        ...

    def decode_step(
        self, state: DecodeState, tokens: torch.Tensor, *, need_weights: bool = False
    ) -> tuple[torch.Tensor, DecodeState, dict | None]:
        """Feed tokens (B,) -> (logits (B, V) for the next token, new state, weights).
        weights is None unless need_weights: then a dict of attention tensors for this step,
        e.g. {"cross": (B, heads, S) or (B, S), "self": [...per layer (B, heads, t)]}."""
        ...

    def reorder_state(self, state: DecodeState, index: torch.Tensor) -> DecodeState:
        """Select/duplicate batch rows of the state: row i of the result is row index[i]
        (beam search: index has length B * beams)."""
        ...

    def decoding_special_ids(self) -> dict:
        """{"bos": int | None, "eos": int | None, "pad": int | None}: the ids decoding starts with,
        stops at and pads with (None where the model has no such token, e.g. a character LM)."""
        ...

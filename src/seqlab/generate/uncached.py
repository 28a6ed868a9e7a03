"""Decoding without a cache: the whole prefix goes through the model's ordinary forward at every step.

``Uncached(model)`` is an IncrementalDecoder over any of seqlab's generative models, built only
on their training-time ``forward``. It costs O(T^2) tokens of work for T steps instead of O(T),
and exists to check the cached path (``seqlab generate --no-cache``, the tests, the benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Uncached", "max_context"]


def max_context(model) -> int | None:
    """The longest context a language model reads (``max_context``, else ``block_size``); None: no limit."""
    limit = getattr(model, "max_context", None)
    return getattr(model, "block_size", None) if limit is None else limit


@dataclass
class UncachedState:
    prefix: torch.Tensor  # (B, L): every token fed so far (a seq2seq's starts with <bos>)
    source: torch.Tensor | None = None  # (B, S) seq2seq source ids
    source_lengths: torch.Tensor | None = None  # (B,)


class Uncached:
    """An IncrementalDecoder that recomputes everything: logits = forward(prefix)[:, -1]."""

    def __init__(self, model):
        self.model = model
        self.vocab_size = model.vocab_size
        self.max_context = max_context(model)

    def decoding_special_ids(self) -> dict:
        return self.model.decoding_special_ids()

    def begin_decoding(self, *, source=None, source_lengths=None, prompt=None, max_new_tokens: int):
        """As the model's own: (state, first tokens (B,)); the model's checks run on the same arguments."""
        _, first = self.model.begin_decoding(
            source=source, source_lengths=source_lengths, prompt=prompt, max_new_tokens=max_new_tokens
        )
        if source is not None:
            lengths = source_lengths
            if lengths is None:
                lengths = (source != self.decoding_special_ids()["pad"]).sum(-1)
            return UncachedState(first.new_zeros(first.shape[0], 0), source, lengths), first
        limit = self.max_context
        prompt = prompt if limit is None else prompt[:, -limit:]
        return UncachedState(prompt[:, :-1]), first

    def decode_step(self, state: UncachedState, tokens: torch.Tensor, *, need_weights: bool = False):
        """tokens (B,) -> logits (B, V) from one full forward over the prefix; weights {} (not kept)."""
        prefix = torch.cat((state.prefix, tokens[:, None]), dim=1)  # (B, L + 1)
        if state.source is not None:
            # forward(x, y) predicts y[:, t + 1] from y[:, :t + 1]; one extra target (any real token, here
            # <eos>) makes its last logits the prediction after the whole prefix.
            eos = self.decoding_special_ids()["eos"]
            y = torch.cat((prefix, torch.full_like(tokens[:, None], eos)), dim=1)  # (B, L + 2)
            logits = self.model(state.source, y, source_lengths=state.source_lengths)[0][:, -1]  # (B, V)
        else:
            limit = self.max_context
            context = prefix if limit is None else prefix[:, -limit:]  # the last block_size tokens, as nanoGPT
            logits = self.model(context)[0][:, -1]  # (B, V)
        return logits, UncachedState(prefix, state.source, state.source_lengths), ({} if need_weights else None)

    def reorder_state(self, state: UncachedState, index: torch.Tensor) -> UncachedState:
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return UncachedState(pick(state.prefix), pick(state.source), pick(state.source_lengths))

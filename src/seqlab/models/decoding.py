"""The incremental-decoding contract shared by every model that writes tokens one at a time.

A model that implements :class:`IncrementalDecoder` (``seq2seq_rnn``, ``seq2seq_transformer``,
``gpt``, ``rnn_lm``) can be decoded by any search written against it: :func:`greedy_decode`
here (used by ``seqlab eval`` on seq2seq runs), beam search and sampling in ``seqlab.generate``.
The search never looks inside the state; the model alone knows what it holds (key/value caches,
recurrent state, encoder memory and its padding mask).

One decoding step, for a batch of B rows::

    state, tokens = model.begin_decoding(source=..., source_lengths=..., max_new_tokens=N)
    for _ in range(N):
        logits, state, _ = model.decode_step(state, tokens)   # logits (B, V)
        tokens = logits.argmax(-1)                            # (B,)

Cached decoding equals the full, uncached forward on the same prefix (tested to 1e-5 per model).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..utils import eval_mode

__all__ = ["DecodeState", "IncrementalDecoder", "greedy_decode"]


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


@torch.no_grad()
def greedy_decode(
    model: IncrementalDecoder,
    *,
    source: torch.Tensor | None = None,
    source_lengths: torch.Tensor | None = None,
    prompt: torch.Tensor | None = None,
    max_new_tokens: int,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Take the most probable token at every step -> LongTensor (B, <= max_new_tokens).

    y_t = argmax_v P(v | y_<t, source). The output holds the generated tokens only (no <bos>,
    no prompt). ``eos_id`` defaults to the model's own (``decoding_special_ids()["eos"]``); a row
    that has produced <eos> keeps it and is padded with the pad id (0 when the model has none)
    after it, and decoding stops early once every row has produced <eos>. The model runs in
    eval mode and is put back in the mode it was in.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    special = model.decoding_special_ids()
    if eos_id is None:
        eos_id = special.get("eos")
    pad_id = special.get("pad")
    pad_id = 0 if pad_id is None else pad_id
    with eval_mode(model):
        state, tokens = model.begin_decoding(
            source=source, source_lengths=source_lengths, prompt=prompt, max_new_tokens=max_new_tokens
        )
        B = tokens.size(0)
        finished = torch.zeros(B, dtype=torch.bool, device=tokens.device)  # (B,)
        out = []
        for _ in range(max_new_tokens):
            logits, state, _ = model.decode_step(state, tokens)  # (B, V)
            tokens = logits.argmax(dim=-1)  # (B,)
            tokens = tokens.masked_fill(finished, pad_id)  # rows already done write padding
            out.append(tokens)
            if eos_id is not None:
                finished = finished | (tokens == eos_id)
                if bool(finished.all()):
                    break
    return torch.stack(out, dim=1)  # (B, steps)

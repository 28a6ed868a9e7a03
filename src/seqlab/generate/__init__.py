"""Decoding for every model that predicts a next token (gpt, rnn_lm, seq2seq_rnn, seq2seq_transformer).

Built on the incremental-decoding contract (``seqlab.models.decoding.IncrementalDecoder``):
greedy decoding, sampling (temperature, top-k, top-p, min-p, seeded), batched beam search
(GNMT length penalty, early stopping, several sequences per input with their log-probabilities),
logit processors (repetition penalty, no-repeat n-grams, banned ids, min_new_tokens) and stop
conditions (<eos> ids, stop strings)::

    from seqlab.generate import generate
    out = generate(model, prompt=ids, max_new_tokens=200, temperature=0.8, top_k=40, seed=0)
    out = generate(model, source=src, num_beams=5, length_penalty=0.6, num_return_sequences=3)
"""

import importlib

from .config import GenerationConfig, GenerationConfigError

# The search and the no-cache wrapper need torch: they are imported on first use, so that the command line
# builds its flags from GenerationConfig's fields without importing torch (`seqlab --help` stays instant).
_LAZY = {
    "ContextTooLong": ".output",
    "GenerationOutput": ".output",
    "generate": ".search",
    "length_penalty": ".search",
    "Uncached": ".uncached",
    "max_context": ".uncached",
}

__all__ = [
    "ContextTooLong",
    "GenerationConfig",
    "GenerationConfigError",
    "GenerationOutput",
    "Uncached",
    "generate",
    "length_penalty",
    "max_context",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

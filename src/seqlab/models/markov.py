"""An order-k Markov chain (n-gram model, n = k + 1) over discrete symbols, fit by counting.

The lecture's Markov assumption keeps the last k symbols of the past:

    P(x_t | x_1, ..., x_{t-1}) = P(x_t | x_{t-k}, ..., x_{t-1})

and the maximum-likelihood estimate is a ratio of counts; add-alpha (Lidstone) smoothing adds
alpha to every count so that nothing unseen has probability 0:

    P(x | c) = (N(c, x) + alpha) / (N(c) + alpha V)

with N(c, x) the number of times context c is followed by x in the training sequence, N(c) =
sum_x N(c, x), V the vocabulary size. alpha = 1 is Laplace's rule; alpha = 0 is the MLE (an
unseen context then gets the uniform distribution, the limit of every alpha > 0).

By the chain rule, log P(x_1..x_T) = sum_t log P(x_t | x_<t). The first k symbols of a sequence
have fewer than k predecessors; they are predicted by the same estimate with the shorter
context (order t - 1 for x_t), counted from the same text, so every symbol is scored.
Perplexity is exp(-log P / T) and bits per character -log2 P / T.

A first-order chain over characters is the baseline the character language models beat.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from ..utils import log_likelihood_summary


def lidstone(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Add-alpha smoothing of the counts (V,) N(c, x) of one context: (N(c, x) + alpha) / (N(c) + alpha V).

    With alpha = 0 and nothing counted, the uniform distribution (the alpha -> 0 limit).
    """
    V = len(counts)
    total = counts.sum() + alpha * V
    if total == 0:
        return np.full(V, 1.0 / V)
    return (counts + alpha) / total


class MarkovModel:
    """``MarkovModel(order, alpha=1.0).fit(text)``; then ``prob``, ``log_likelihood``, ``perplexity``,
    ``bits_per_character``, ``sample``. Symbols are the items of the sequence (a string's characters,
    or any hashable tokens such as words)."""

    def __init__(self, order: int, alpha: float = 1.0):
        if not isinstance(order, int) or order < 0:
            raise ValueError(f"order must be an integer >= 0 (0: unigram), got {order!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        self.order, self.alpha = order, float(alpha)
        self.symbols: list[Hashable] = []
        self.index: dict[Hashable, int] = {}
        # counts[j][context of j ids] = Counter of the next id; j = 0 .. order
        self.counts: list[dict[tuple[int, ...], Counter]] = []
        self._text = False

    def __repr__(self) -> str:
        return f"MarkovModel(order={self.order}, alpha={self.alpha}, vocab_size={len(self.symbols)})"

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def fit(self, sequence: Sequence[Hashable], vocab: Sequence[Hashable] | None = None) -> MarkovModel:
        """Count every (context, next symbol) pair in ``sequence``. ``vocab`` defaults to its sorted symbols;
        give a larger one if held-out text may contain symbols the training text lacks."""
        if len(sequence) == 0:
            raise ValueError("cannot fit a Markov model on an empty sequence")
        self._text = isinstance(sequence, str)
        self.symbols = list(vocab) if vocab is not None else sorted(set(sequence))
        self.index = {s: i for i, s in enumerate(self.symbols)}
        if len(self.index) != len(self.symbols):
            raise ValueError("vocab has repeated symbols")
        ids = self._encode(sequence)
        self.counts = [defaultdict(Counter) for _ in range(self.order + 1)]
        for t, x in enumerate(ids):
            for j in range(min(t, self.order) + 1):
                self.counts[j][tuple(ids[t - j : t])][x] += 1
        self.counts = [dict(c) for c in self.counts]
        return self

    def _check_fitted(self) -> None:
        if not self.symbols:
            raise RuntimeError("MarkovModel is not fitted: call .fit(sequence) first")

    def _encode(self, sequence: Sequence[Hashable]) -> list[int]:
        ids = []
        for t, s in enumerate(sequence):
            i = self.index.get(s)
            if i is None:
                raise ValueError(
                    f"symbol {s!r} at position {t} is not in the model's vocabulary of "
                    f"{len(self.symbols)} symbols; fit with vocab=... covering it"
                )
            ids.append(i)
        return ids

    def _context(self, ids: Sequence[int]) -> tuple[int, ...]:
        return tuple(ids[len(ids) - min(len(ids), self.order) :])

    def count(self, context: Sequence[Hashable], symbol: Hashable) -> int:
        """N(context, symbol): how often ``context`` (at most ``order`` symbols) was followed by ``symbol``."""
        self._check_fitted()
        if len(context) > self.order:
            raise ValueError(
                f"a context of an order-{self.order} model has at most {self.order} symbols, got {len(context)}"
            )
        ctx = tuple(self._encode(context))
        return self.counts[len(ctx)].get(ctx, Counter())[self._encode([symbol])[0]]

    def _distribution(self, ctx: tuple[int, ...]) -> np.ndarray:
        counts = np.zeros(len(self.symbols))  # (V,) N(ctx, x)
        for x, n in self.counts[len(ctx)].get(ctx, Counter()).items():
            counts[x] = n
        return lidstone(counts, self.alpha)

    def distribution(self, context: Sequence[Hashable] = ()) -> np.ndarray:
        """P(. | the last ``order`` symbols of ``context``) over ``symbols``: (V,), sums to 1."""
        self._check_fitted()
        return self._distribution(self._context(self._encode(context)))

    def prob(self, symbol: Hashable, context: Sequence[Hashable] = ()) -> float:
        """P(symbol | the last ``order`` symbols of ``context``)."""
        self._check_fitted()
        return float(self._distribution(self._context(self._encode(context)))[self._encode([symbol])[0]])

    def log_likelihood(self, sequence: Sequence[Hashable], context: Sequence[Hashable] = ()) -> float:
        """log P(x_1..x_T | context) = sum_t log P(x_t | x_<t), in nats (-inf if a symbol has probability 0).

        ``context`` is text that precedes ``sequence`` (e.g. the end of the training part): it
        conditions the first symbols but is not scored.
        """
        self._check_fitted()
        ids = self._encode(context) + self._encode(sequence)
        start = len(ids) - len(sequence)
        total = 0.0
        for t in range(start, len(ids)):
            p = self._distribution(tuple(ids[max(t - self.order, 0) : t]))[ids[t]]
            if p == 0.0:
                return -math.inf
            total += math.log(p)
        return total

    def evaluate(self, sequence: Sequence[Hashable], context: Sequence[Hashable] = ()) -> dict[str, float]:
        """log_likelihood (nats), tokens, nll_per_token (nats), perplexity and bits_per_char of ``sequence``."""
        if len(sequence) == 0:
            raise ValueError("cannot evaluate an empty sequence")
        return log_likelihood_summary(self.log_likelihood(sequence, context), len(sequence))

    def perplexity(self, sequence: Sequence[Hashable], context: Sequence[Hashable] = ()) -> float:
        """exp(-log P(x_1..x_T) / T)."""
        return self.evaluate(sequence, context)["perplexity"]

    def bits_per_character(self, sequence: Sequence[Hashable], context: Sequence[Hashable] = ()) -> float:
        """-log2 P(x_1..x_T) / T: the average code length of a symbol under the model."""
        return self.evaluate(sequence, context)["bits_per_char"]

    def sample(
        self, length: int, prefix: Sequence[Hashable] = (), *, temperature: float = 1.0, seed: int | None = None
    ):
        """``length`` symbols drawn one at a time from P(x_t | last k symbols), after ``prefix``.

        Returns a string for a model fit on a string, a list otherwise (the prefix not included).
        """
        self._check_fitted()
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        rng = np.random.default_rng(seed)
        ids = self._encode(prefix)
        out = []
        for _ in range(length):
            p = self._distribution(self._context(ids))
            if temperature != 1.0:
                with np.errstate(divide="ignore"):
                    logits = np.log(p) / temperature
                p = np.exp(logits - logits.max())
                p /= p.sum()
            x = int(rng.choice(len(p), p=p))
            ids.append(x)
            out.append(self.symbols[x])
        return "".join(out) if self._text else out

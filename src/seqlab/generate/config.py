"""GenerationConfig: every setting of a decoding run, checked when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import ConfigError

__all__ = ["GenerationConfig", "GenerationConfigError"]


class GenerationConfigError(ConfigError):
    """A GenerationConfig value out of range; ``key`` is the field it names (the CLI maps it to a flag)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key} {message}")
        self.key, self.detail = key, message


@dataclass(frozen=True)
class GenerationConfig:
    """How to pick tokens. Greedy by default; ``temperature > 0`` samples; ``num_beams > 1`` searches.

    Search (``num_beams > 1``) ranks a hypothesis Y by GNMT's length-normalised score
    (Wu et al. 2016, eq. 14, without the coverage term)::

        score(Y) = log P(Y | X) / lp(Y),     lp(Y) = ((5 + |Y|) / 6) ** length_penalty

    |Y| counts the generated tokens, <eos> included. ``length_penalty = 0`` ranks by log P itself
    (which favours short outputs); larger values favour longer ones.

    Sampling (``temperature > 0``) draws from softmax(logits / temperature) after, in this order,
    ``top_k`` (keep the k most probable), ``top_p`` (keep the smallest set reaching probability p)
    and ``min_p`` (keep tokens with p >= min_p * p_max). ``temperature = 0`` takes the argmax.
    """

    max_new_tokens: int = 100  # tokens generated at most, <eos> included
    min_new_tokens: int = 0  # <eos> (and stop strings) are masked until this many tokens exist
    temperature: float = 0.0  # 0: greedy (argmax); > 0: sample from softmax(logits / temperature)
    top_k: int = 0  # 0: off; k: sample among the k most probable (ties: the lower token id wins)
    top_p: float = 1.0  # 1: off; p: sample from the smallest set whose probability reaches p
    min_p: float = 0.0  # 0: off; keep tokens whose probability is >= min_p * the largest probability
    num_beams: int = 1  # 1: greedy or sampling; > 1: batched beam search
    # alpha in lp(Y) = ((5 + |Y|) / 6) ** alpha (beam search only). 0.6: GNMT's tuned value (Wu et al. 2016
    # report 0.6-0.7 best), and the one every documented beam result of seqlab eval was measured with; at 0
    # beam search ranks by log P alone and prefers short outputs, the bias the penalty exists to remove.
    length_penalty: float = 0.6
    early_stopping: bool = False  # beam search: stop a sentence once num_beams hypotheses have ended
    num_return_sequences: int = 1  # sequences per input (<= num_beams in beam search), best first
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the context less likely (CTRL)
    no_repeat_ngram_size: int = 0  # n > 0: never generate an n-gram that the context already holds
    banned_ids: tuple[int, ...] = ()  # token ids never generated
    eos_ids: tuple[int, ...] | None = None  # ids that end a sequence; None: the model's <eos> (if any)
    stop_strings: tuple[str, ...] = ()  # end a sequence once its text contains one (kept in the output)
    seed: int | None = None  # sampling: the same seed gives the same samples
    use_cache: bool = True  # False: feed the whole prefix at every step (for checking the cache)
    output_attentions: bool = False  # return each step's attention weights

    def __post_init__(self):
        def bad(key: str, message: str):
            raise GenerationConfigError(key, f"{message}, got {getattr(self, key)!r}")

        def finite(key: str):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                bad(key, "must be a finite number")

        for key in (
            "max_new_tokens",
            "min_new_tokens",
            "top_k",
            "num_beams",
            "num_return_sequences",
            "no_repeat_ngram_size",
        ):
            if isinstance(getattr(self, key), bool) or not isinstance(getattr(self, key), int):
                bad(key, "must be an integer")
        for key in ("temperature", "top_p", "min_p", "length_penalty", "repetition_penalty"):
            finite(key)
        if self.max_new_tokens < 1:
            bad("max_new_tokens", "must be >= 1")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            bad("min_new_tokens", f"must be in 0..max_new_tokens ({self.max_new_tokens})")
        if self.temperature < 0:
            bad("temperature", "must be >= 0 (0: greedy)")
        if self.top_k < 0:
            bad("top_k", "must be >= 0 (0: off)")
        if not 0 < self.top_p <= 1:
            bad("top_p", "must be in (0, 1] (1: off)")
        if not 0 <= self.min_p <= 1:
            bad("min_p", "must be in [0, 1] (0: off)")
        if self.num_beams < 1:
            bad("num_beams", "must be >= 1")
        if self.num_return_sequences < 1:
            bad("num_return_sequences", "must be >= 1")
        if self.repetition_penalty <= 0:
            bad("repetition_penalty", "must be > 0 (1: off; > 1 penalises repeats)")
        if self.no_repeat_ngram_size < 0:
            bad("no_repeat_ngram_size", "must be >= 0 (0: off)")
        for key in ("banned_ids", "eos_ids"):
            ids = getattr(self, key)
            if ids is not None and (
                not isinstance(ids, tuple) or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids)
            ):
                bad(key, "must be a tuple of token ids >= 0")
        if not isinstance(self.stop_strings, tuple) or any(not isinstance(s, str) or not s for s in self.stop_strings):
            bad("stop_strings", "must be a tuple of non-empty strings")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            bad("seed", "must be an integer or None")
        if self.seed is not None and not 0 <= self.seed < 2**64:  # what torch.Generator.manual_seed takes
            bad("seed", f"must be in 0..{2**64 - 1}")
        sampling = self.temperature > 0
        if self.num_beams > 1:
            if sampling:
                bad(
                    "temperature",
                    "must be 0 with num_beams > 1 (beam search is deterministic; beam sampling is not supported)",
                )
            if self.num_return_sequences > self.num_beams:
                bad(
                    "num_return_sequences",
                    f"must be <= num_beams ({self.num_beams}): beam search keeps that many hypotheses",
                )
            if self.stop_strings:
                bad("stop_strings", "work with num_beams = 1 only (greedy or sampling)")
        elif not sampling and self.num_return_sequences > 1:
            bad(
                "num_return_sequences",
                "must be 1 for greedy decoding (every copy would be the same): "
                "sample (temperature > 0) or search (num_beams >= it)",
            )
        if not sampling:
            for key, off in (("top_k", 0), ("top_p", 1.0), ("min_p", 0.0)):
                if getattr(self, key) != off:
                    bad(
                        key,
                        "filters the sampled distribution: it needs temperature > 0 "
                        f"(set it to {off} for greedy decoding or beam search)",
                    )

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

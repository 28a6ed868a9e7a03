"""Greedy decoding, sampling and batched beam search over any IncrementalDecoder.

Symbols: B inputs, K beams (or samples) per input, R = B * K rows decoded together, V the
vocabulary, N = max_new_tokens. Every step is one ``decode_step`` over all live rows. Rows whose
sequence has ended (greedy, sampling) and inputs whose search is settled (beam search) are
dropped from the state (``reorder_state``) so later steps do not compute them.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import replace

import torch

from ..utils import available_memory, eval_mode, format_bytes
from . import processors as P
from .beam import BeamSearch
from .config import GenerationConfig, GenerationConfigError
from .output import ContextTooLong, GenerationOutput, _pick, _Trace, length_penalty
from .uncached import Uncached, max_context

NEG_INF = float("-inf")

__all__ = ["check_output_memory", "generate", "length_penalty"]


# Bytes per row and generated token that a search keeps: its id, the id in the repetition context, and its
# log-probability (beam search also copies them per beam). A lower bound; the model's state comes on top.
BYTES_PER_TOKEN = 24


def check_output_memory(max_new_tokens: int, rows: int) -> None:
    """Refuse, before anything is allocated, a max_new_tokens whose outputs alone could not fit in memory."""
    need, room = rows * max_new_tokens * BYTES_PER_TOKEN, available_memory()
    if room is not None and need > room:
        raise GenerationConfigError(
            "max_new_tokens",
            f"is too large: {rows} sequence(s) of up to {max_new_tokens:,} tokens need {format_bytes(need)}, "
            f"more than the {format_bytes(room)} this process can allocate, got {max_new_tokens}",
        )


def check_prompt(prompt: torch.Tensor, vocab_size: int) -> None:
    """A prompt is (B, P) integer ids of the model's vocabulary, B, P >= 1: else a ValueError naming the fix."""
    integer = not (prompt.dtype.is_floating_point or prompt.dtype.is_complex or prompt.dtype == torch.bool)
    if prompt.dim() != 2 or 0 in prompt.shape or not integer:
        fix = " (one prompt: prompt[None])" if prompt.dim() == 1 else ""
        got = f"{prompt.dtype} of shape {tuple(prompt.shape)}"
        raise ValueError(f"prompt must be (B, P) integer token ids with B, P >= 1, got {got}{fix}")
    low, high = int(prompt.min()), int(prompt.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"the prompt holds token id {high if high >= vocab_size else low}, outside the model's vocabulary "
            f"(0..{vocab_size - 1})"
        )


@torch.no_grad()
def generate(
    model,
    *,
    prompt: torch.Tensor | None = None,
    source: torch.Tensor | None = None,
    source_lengths: torch.Tensor | None = None,
    config: GenerationConfig | None = None,
    decode=None,
    streamer=None,
    **settings,
) -> GenerationOutput:
    """Decode ``model`` (an IncrementalDecoder) from a prompt (B, P) or a source (B, S) [+ lengths (B,)].

    ``config`` (default ``GenerationConfig()``: greedy) may be adjusted by keyword, e.g.
    ``generate(model, prompt=x, max_new_tokens=50, temperature=0.8, top_k=40)``.
    ``decode(ids: list[int]) -> str`` turns tokens into text; it is needed for ``stop_strings``.
    ``streamer(rows, tokens)`` is called after every greedy or sampling step with the output rows
    still running (M',) and their new tokens (M',), to print text as it is generated.

    A prompt longer than the model's context (``max_context`` or ``block_size``) keeps its last
    tokens, with a ``ContextTooLong`` warning. For a seq2seq model <bos> and <pad> are never
    generated. The model runs in eval mode and is put back in its mode.
    """
    cfg = replace(config or GenerationConfig(), **settings) if settings else (config or GenerationConfig())
    if (prompt is None) == (source is None):
        raise ValueError("give either prompt (a language model) or source (a seq2seq model)")
    if cfg.stop_strings and decode is None:
        raise ValueError("stop_strings need decode (ids -> text) to read the generated text")
    V = model.vocab_size
    special = model.decoding_special_ids()
    eos_ids = cfg.eos_ids if cfg.eos_ids is not None else tuple(i for i in (special.get("eos"),) if i is not None)
    banned = list(cfg.banned_ids)
    if source is not None:  # <bos> and <pad> are not words of a translation
        banned += [special[k] for k in ("bos", "pad") if special.get(k) is not None and special[k] not in eos_ids]
    wrong = [i for i in (*banned, *eos_ids) if i >= V]
    if wrong:
        raise ValueError(f"token id {wrong[0]} is outside the model's vocabulary (0..{V - 1})")
    if prompt is not None:
        check_prompt(prompt, V)
        limit = max_context(model)
        if limit is not None and prompt.shape[1] > limit:
            warnings.warn(
                f"the prompt has {prompt.shape[1]} tokens but the model reads at most {limit}: "
                f"only its last {limit} are used",
                ContextTooLong,
                stacklevel=2,
            )
            prompt = prompt[:, -limit:]
    rows = (prompt if prompt is not None else source).shape[0] * max(cfg.num_beams, cfg.num_return_sequences)
    check_output_memory(cfg.max_new_tokens, rows)
    with eval_mode(model) if isinstance(model, torch.nn.Module) else contextlib.nullcontext():
        decoder = model if cfg.use_cache else Uncached(model)
        state, first = decoder.begin_decoding(
            source=source, source_lengths=source_lengths, prompt=prompt, max_new_tokens=cfg.max_new_tokens
        )
        # What the repetition rules read: a language model's prompt, then every generated token.
        context = prompt if prompt is not None else first.new_zeros(first.shape[0], 0)  # (B, L)
        search = _Search(decoder, cfg, eos_ids, banned, special.get("pad"), V)
        if cfg.num_beams > 1:
            return search.beam(state, first, context)
        return search.sample(state, first, context, decode, streamer)


class _Search(BeamSearch):
    """One decoding run: the shared step (processors, scores) and greedy/sampling; beam search in ``beam.py``."""

    def __init__(self, decoder, cfg: GenerationConfig, eos_ids: tuple, banned: list, pad_id, vocab_size: int):
        self.decoder, self.cfg, self.V = decoder, cfg, vocab_size
        self.eos_ids = eos_ids
        self.banned = banned
        self.pad_id = 0 if pad_id is None else pad_id

    # -- one step's distribution ------------------------------------------------------------------
    def process(self, logits: torch.Tensor, context: torch.Tensor, t: int) -> torch.Tensor:
        """Logits (R, V) after the repetition rules, banned ids and (before min_new_tokens) no <eos>."""
        cfg = self.cfg
        z = P.repetition_penalty(logits, context, cfg.repetition_penalty)
        z = P.no_repeat_ngram(z, context, cfg.no_repeat_ngram_size)
        return P.ban(z, self.banned + (list(self.eos_ids) if t < cfg.min_new_tokens else []))

    def extension_scores(self, logits: torch.Tensor, context: torch.Tensor, t: int, beam_scores: torch.Tensor):
        """cand (R, V) with cand[r, v] = beam_scores[r] + log P'(v | row r), P' the searched distribution (after
        the processors); and model_lp(rows, tokens), the model's own log P of chosen tokens.

        ``logits`` (a fresh tensor from decode_step) is overwritten. When only banning shapes P' (fixed
        ids, <eos> before min_new_tokens: the common case) no (R, V) copy is made: with lse' = log-sum-exp
        over the allowed tokens and lse over all of them, log P(v) = log P'(v) + lse' - lse for allowed v.
        """
        cfg = self.cfg
        logits = logits.contiguous()  # (R, V); e.g. a slice of a full forward's (R, T, V) is not
        ids = self.banned + (list(self.eos_ids) if t < cfg.min_new_tokens else [])
        reshaped = cfg.repetition_penalty != 1.0 or cfg.no_repeat_ngram_size > 0
        if reshaped:
            raw_lse = torch.logsumexp(logits, dim=-1)  # (R,)
            z = self.process(logits, context, t)  # (R, V)
            z = z.clone() if z is logits else z  # logits stay as they are: model_lp reads them
        else:
            z = logits
            if ids:
                index = torch.as_tensor(ids, dtype=torch.long, device=z.device)
                banned_lse = torch.logsumexp(z[:, index], dim=-1)  # (R,), read before masking
                z[:, index] = NEG_INF
        # A row whose every token is ruled out has lse' = -inf; clamped, its extensions score -inf, not NaN.
        lse = torch.logsumexp(z, dim=-1).clamp(min=torch.finfo(z.dtype).min)  # (R,)
        cand = z.add_((beam_scores - lse)[:, None])  # (R, V), in place
        if reshaped:

            def model_lp(rows, toks):
                return logits[rows, toks] - raw_lse[rows]
        else:
            shift = lse - (torch.logaddexp(lse, banned_lse) if ids else lse)  # lse' - lse, (R,)

            def model_lp(rows, toks):
                return cand[rows, toks] - beam_scores[rows] + shift[rows]

        return cand, model_lp

    def choose(self, z: torch.Tensor, t: int, generator) -> torch.Tensor:
        """The next token of each row (R,): argmax, or a sample after temperature, top-k, top-p, min-p."""
        if bool(torch.isneginf(z).all(-1).any()):
            raise ValueError(
                f"at step {t + 1} every token is ruled out for some sequence (banned ids, "
                f"no_repeat_ngram_size={self.cfg.no_repeat_ngram_size}, min_new_tokens): relax them"
            )
        cfg = self.cfg
        if not cfg.sampling:
            return z.argmax(dim=-1)  # ties: the lowest id (torch.argmax returns the first maximum)
        z = z / cfg.temperature
        z = P.min_p(P.top_p(P.top_k(z, cfg.top_k), cfg.top_p), cfg.min_p)
        probs = torch.softmax(z, dim=-1)  # (R, V)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (R,)

    # -- greedy and sampling ----------------------------------------------------------------------
    def sample(self, state, first: torch.Tensor, context: torch.Tensor, decode, streamer) -> GenerationOutput:
        cfg, dec = self.cfg, self.decoder
        n, N = cfg.num_return_sequences, cfg.max_new_tokens
        device = first.device
        if n > 1:  # n independent samples per input: repeat each row n times
            index = torch.arange(first.shape[0], device=device).repeat_interleave(n)
            state, first, context = dec.reorder_state(state, index), first[index], context[index]
        M = first.shape[0]
        generator = None
        if cfg.sampling and cfg.seed is not None:
            generator = torch.Generator(device=device)
            generator.manual_seed(cfg.seed)
        # Output buffers grow as tokens come (doubling): a large max_new_tokens allocates nothing up front.
        room = min(N, 256)
        out = torch.full((M, room), self.pad_id, dtype=torch.long, device=device)  # (M, room)
        token_lp = torch.zeros(M, room, device=device)  # (M, room)
        lengths = torch.zeros(M, dtype=torch.long, device=device)
        finished = torch.zeros(M, dtype=torch.bool, device=device)
        eos = torch.tensor(self.eos_ids, dtype=torch.long, device=device)
        rows = torch.arange(M, device=device)  # the output row of each live row
        prompt_len = context.shape[1]
        trace = _Trace() if cfg.output_attentions else None
        parents, tokens = None, first
        longest_stop = max((len(s) for s in cfg.stop_strings), default=0)
        for t in range(N):
            logits, state, weights = dec.decode_step(state, tokens, need_weights=cfg.output_attentions)
            logits = logits.float()  # (R, V)
            if trace is not None:
                trace.add(weights, parents)
            lse = torch.logsumexp(logits, dim=-1)  # (R,): the model's own normaliser, log sum_v exp z_v
            tokens = self.choose(self.process(logits, context, t), t, generator)  # (R,)
            if t == room:
                room = min(2 * room, N)
                out = torch.cat((out, out.new_full((M, room - t), self.pad_id)), dim=1)  # (M, room)
                token_lp = torch.cat((token_lp, token_lp.new_zeros(M, room - t)), dim=1)  # (M, room)
            out[rows, t] = tokens
            token_lp[rows, t] = logits.gather(1, tokens[:, None]).squeeze(1) - lse  # log P(y_t) of the model
            lengths[rows] = t + 1
            context = torch.cat((context, tokens[:, None]), dim=1)  # (R, L + 1)
            if streamer is not None:
                streamer(rows, tokens)
            done = torch.isin(tokens, eos)  # (R,)
            if longest_stop and t + 1 >= cfg.min_new_tokens:
                tails = context[:, max(prompt_len, context.shape[1] - longest_stop) :].tolist()
                hit = [any(s in decode(tail) for s in cfg.stop_strings) for tail in tails]
                done |= torch.tensor(hit, dtype=torch.bool, device=device)
            parents = None
            if bool(done.any()):
                finished[rows[done]] = True
                keep = (~done).nonzero().squeeze(1)  # (R',)
                if keep.numel() == 0 or t + 1 == N:
                    break
                rows, tokens, context = rows[keep], tokens[keep], context[keep]
                state, parents = dec.reorder_state(state, keep), keep
        T = int(lengths.max()) if M else 0
        attentions = None
        if trace is not None:
            attentions = [[] for _ in range(M)]
            live = list(range(M))  # output row -> its row at the current step
            for t, (weights, step_parents) in enumerate(trace.steps):
                if step_parents is not None:  # rows were dropped before this step
                    position = {old: new for new, old in enumerate(step_parents)}
                    live = [position.get(r) if r is not None else None for r in live]
                for m, r in enumerate(live):
                    if r is not None and t < int(lengths[m]):
                        attentions[m].append(_pick(weights, r))
        log_probs = token_lp.sum(1)
        return GenerationOutput(
            out[:, :T], lengths, log_probs.clone(), log_probs, token_lp[:, :T], finished, attentions, n
        )

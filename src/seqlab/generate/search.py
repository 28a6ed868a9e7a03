"""Greedy decoding, sampling and batched beam search over any IncrementalDecoder.

Symbols: B inputs, K beams (or samples) per input, R = B * K rows decoded together, V the
vocabulary, N = max_new_tokens. Every step is one ``decode_step`` over all live rows. Rows whose
sequence has ended (greedy, sampling) and inputs whose search is settled (beam search) are
dropped from the state (``reorder_state``) so later steps do not compute them.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, replace

import torch

from ..utils import eval_mode
from . import processors as P
from .config import GenerationConfig
from .output import ContextTooLong, GenerationOutput
from .uncached import Uncached, max_context

NEG_INF = float("-inf")

__all__ = ["generate", "length_penalty"]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14); beam scores are log P / lp."""
    return ((5.0 + length) / 6.0) ** alpha


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
        limit = max_context(model)
        if limit is not None and prompt.shape[1] > limit:
            warnings.warn(
                f"the prompt has {prompt.shape[1]} tokens but the model reads at most {limit}: "
                f"only its last {limit} are used",
                ContextTooLong,
                stacklevel=2,
            )
            prompt = prompt[:, -limit:]
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


@dataclass
class _Hyp:
    """A finished beam hypothesis."""

    score: float  # log P / lp(|Y|), of the processed distribution searched
    log_prob: float  # the model's own log P(Y | X)
    tokens: list
    token_log_probs: list
    finished: bool
    end: tuple[int, int]  # (step, row) of its last decode_step, for tracing attention weights back


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


class _Search:
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
        out = torch.full((M, N), self.pad_id, dtype=torch.long, device=device)  # (M, N)
        token_lp = torch.zeros(M, N, device=device)  # (M, N)
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

    # -- beam search ------------------------------------------------------------------------------
    def _settled(self, hyps: list[_Hyp], best_alive: float, length: int) -> bool:
        """True when no live beam of this input can enter its K best finished hypotheses any more.

        Log-probabilities only fall as a hypothesis grows, so a live beam's score s bounds every
        continuation: with alpha > 0 the best it could reach is s / lp(max_new_tokens) (the largest
        lp); with alpha <= 0, s / lp(length + 1) (ending at the very next step).
        """
        cfg = self.cfg
        if best_alive == -math.inf:
            return True
        if len(hyps) < cfg.num_beams:
            return False
        if cfg.early_stopping:
            return True
        alpha = cfg.length_penalty
        bound = best_alive / length_penalty(cfg.max_new_tokens if alpha > 0 else length + 1, alpha)
        return bound <= hyps[-1].score

    def _keep(self, hyps: list[_Hyp], hyp: _Hyp) -> None:
        """Insert ``hyp`` into ``hyps`` (best first), keeping at most num_beams."""
        if hyp.score == -math.inf:
            return
        hyps.append(hyp)
        hyps.sort(key=lambda h: -h.score)
        del hyps[self.cfg.num_beams :]

    def beam(self, state, first: torch.Tensor, context: torch.Tensor) -> GenerationOutput:
        """Batched beam search: B inputs x K beams in each forward; finished hypotheses kept per input.

        At each step the candidates are the K * V extensions of the live beams, scored by their
        summed log-probability. Among the (1 + #eos) * K best, an <eos> ranked within the first K
        ends a hypothesis (scored log P / lp(|Y|)); the K best that do not end are the next beams.
        An input is settled when its K finished hypotheses cannot be beaten (``_settled``), or at
        max_new_tokens, when its live beams join the finished ones.
        """
        cfg, dec, V = self.cfg, self.decoder, self.V
        K, N, n = cfg.num_beams, cfg.max_new_tokens, cfg.num_return_sequences
        B, device = first.shape[0], first.device
        index = torch.arange(B, device=device).repeat_interleave(K)  # (B*K,): every input's row, K times
        state, tokens, context = dec.reorder_state(state, index), first[index], context[index]
        beam_scores = torch.zeros(B, K, device=device)
        beam_scores[:, 1:] = -math.inf  # all K start equal: let only the first expand at step 0
        sum_lp = torch.zeros(B * K, device=device)  # (R,) the model's own log P of each live beam
        token_lp = torch.zeros(B * K, 0, device=device)  # (R, t)
        gen = torch.zeros(B * K, 0, dtype=torch.long, device=device)  # (R, t) generated tokens
        eos = torch.tensor(self.eos_ids, dtype=torch.long, device=device)
        n_cand = min((1 + len(self.eos_ids)) * K, K * V)
        ranks = torch.arange(n_cand, device=device)
        live = list(range(B))  # input of each block of K rows
        hyps: list[list[_Hyp]] = [[] for _ in range(B)]
        trace = _Trace() if cfg.output_attentions else None
        parents = None
        for t in range(N):
            logits, state, weights = dec.decode_step(state, tokens, need_weights=cfg.output_attentions)
            logits = logits.float()  # (R, V), R = len(live) * K
            if trace is not None:
                trace.add(weights, parents)
            Bl = len(live)
            cand, model_lp = self.extension_scores(logits, context, t, beam_scores.view(-1))  # (R, V)
            cand = cand.view(Bl, K * V)  # (Bl, K*V): the score of every extension of every beam
            top, idx = cand.topk(n_cand, dim=1)  # (Bl, n_cand), best first
            src = idx // V  # the beam each candidate extends
            tok = idx % V
            is_eos = torch.isin(tok, eos)  # (Bl, n_cand)
            ending = is_eos & (ranks < K) & torch.isfinite(top)
            if bool(ending.any()):
                for i, c in ending.nonzero().tolist():
                    row, v = i * K + int(src[i, c]), int(tok[i, c])
                    lp_v = float(model_lp(row, v))
                    self._keep(
                        hyps[live[i]],
                        _Hyp(
                            float(top[i, c]) / length_penalty(t + 1, cfg.length_penalty),
                            float(sum_lp[row]) + lp_v,
                            gen[row].tolist() + [v],
                            token_lp[row].tolist() + [lp_v],
                            True,
                            (t, row),
                        ),
                    )
            # The K best candidates that do not end: non-<eos> first, each group in rank order.
            pick = torch.sort(is_eos.long(), dim=1, stable=True).indices[:, :K]  # (Bl, K)
            new_scores = top.gather(1, pick)  # (Bl, K)
            new_src = (torch.arange(Bl, device=device)[:, None] * K + src.gather(1, pick)).view(-1)  # (Bl*K,)
            new_tok = tok.gather(1, pick).view(-1)  # (Bl*K,)
            best = new_scores[:, 0].tolist()
            last = t + 1 == N
            settled = [last or self._settled(hyps[b], best[i], t + 1) for i, b in enumerate(live)]
            keep_inputs = [i for i, s in enumerate(settled) if not s]
            if last:  # out of steps: the live beams of every unsettled input join its hypotheses
                last_lp = model_lp(new_src, new_tok)  # (R,)
                alive_lp = sum_lp[new_src] + last_lp
                for i, b in enumerate(live):
                    if len(hyps[b]) >= K and self._settled(hyps[b], best[i], t + 1):
                        continue
                    for k in range(K):
                        j = i * K + k
                        row = int(new_src[j])
                        self._keep(
                            hyps[b],
                            _Hyp(
                                float(new_scores[i, k]) / length_penalty(N, cfg.length_penalty),
                                float(alive_lp[j]),
                                gen[row].tolist() + [int(new_tok[j])],
                                token_lp[row].tolist() + [float(last_lp[j])],
                                False,
                                (t, row),
                            ),
                        )
                break
            if not keep_inputs:
                break
            if len(keep_inputs) < Bl:  # drop the settled inputs' rows
                kept = torch.tensor(keep_inputs, device=device)
                rows_kept = (kept[:, None] * K + torch.arange(K, device=device)).view(-1)  # (Bl'*K,)
                new_src, new_tok, new_scores = new_src[rows_kept], new_tok[rows_kept], new_scores[kept]
                live = [live[i] for i in keep_inputs]
            step_lp = model_lp(new_src, new_tok)  # (R',)
            sum_lp = sum_lp[new_src] + step_lp
            token_lp = torch.cat((token_lp[new_src], step_lp[:, None]), dim=1)
            gen = torch.cat((gen[new_src], new_tok[:, None]), dim=1)
            context = torch.cat((context[new_src], new_tok[:, None]), dim=1)
            beam_scores = new_scores
            state, tokens, parents = dec.reorder_state(state, new_src), new_tok, new_src
        return self._collect(hyps, n, device, trace)

    def _collect(self, hyps: list[list[_Hyp]], n: int, device, trace: _Trace | None) -> GenerationOutput:
        """The n best hypotheses of every input as padded tensors (an input with fewer gets empty rows)."""
        chosen = []
        for per_input in hyps:
            best = per_input[:n]
            chosen += best + [None] * (n - len(best))
        M = len(chosen)
        T = max((len(h.tokens) for h in chosen if h is not None), default=0)
        seqs = torch.full((M, T), self.pad_id, dtype=torch.long)
        token_lp = torch.zeros(M, T)
        lengths = torch.zeros(M, dtype=torch.long)
        scores = torch.full((M,), -math.inf)
        log_probs = torch.full((M,), -math.inf)
        finished = torch.zeros(M, dtype=torch.bool)
        for m, h in enumerate(chosen):
            if h is None:
                continue
            L = len(h.tokens)
            seqs[m, :L] = torch.tensor(h.tokens)
            token_lp[m, :L] = torch.tensor(h.token_log_probs)
            lengths[m], scores[m], log_probs[m], finished[m] = L, h.score, h.log_prob, h.finished
        attentions = None
        if trace is not None:
            attentions = [[] if h is None else trace.back(*h.end) for h in chosen]
        return GenerationOutput(
            seqs.to(device),
            lengths.to(device),
            scores.to(device),
            log_probs.to(device),
            token_lp.to(device),
            finished.to(device),
            attentions,
            n,
        )

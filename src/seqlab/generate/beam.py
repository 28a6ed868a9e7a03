"""Batched beam search over an IncrementalDecoder: B inputs x K beams decoded together (see ``generate``)."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch

from .output import GenerationOutput, _Trace, length_penalty


@dataclass
class _Hyp:
    """A finished beam hypothesis."""

    score: float  # log P / lp(|Y|), of the processed distribution searched
    log_prob: float  # the model's own log P(Y | X)
    tokens: list
    token_log_probs: list
    finished: bool
    end: tuple[int, int]  # (step, row) of its last decode_step, for tracing attention weights back


class BeamSearch:
    """The beam-search half of ``search._Search`` (which supplies cfg, decoder, V, eos_ids, pad_id and
    extension_scores)."""

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
        K = self.cfg.num_beams
        if hyp.score == -math.inf or (len(hyps) >= K and hyp.score <= hyps[-1].score):
            return
        bisect.insort_right(hyps, hyp, key=lambda h: -h.score)  # after equal scores: the first found stays first
        del hyps[K:]

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
        stuck: dict[int, int] = {}  # input -> the step at which none of its beams could go on
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
            if bool(ending.any()):  # read back in a few tensor ops, not one per hypothesis (K may be 1,000)
                ii, cc = ending.nonzero(as_tuple=True)
                rows, toks = ii * K + src[ii, cc], tok[ii, cc]  # (E,), (E,)
                lps = model_lp(rows, toks).tolist()
                lp_end = length_penalty(t + 1, cfg.length_penalty)
                for i, row, v, score, lp_v, before, gen_row, lp_row in zip(
                    ii.tolist(),
                    rows.tolist(),
                    toks.tolist(),
                    top[ii, cc].tolist(),
                    lps,
                    sum_lp[rows].tolist(),
                    gen[rows].tolist(),
                    token_lp[rows].tolist(),
                ):
                    self._keep(
                        hyps[live[i]],
                        _Hyp(score / lp_end, before + lp_v, gen_row + [v], lp_row + [lp_v], True, (t, row)),
                    )
            # The K best candidates that do not end: non-<eos> first, each group in rank order.
            pick = torch.sort(is_eos.long(), dim=1, stable=True).indices[:, :K]  # (Bl, K)
            new_scores = top.gather(1, pick)  # (Bl, K)
            new_src = (torch.arange(Bl, device=device)[:, None] * K + src.gather(1, pick)).view(-1)  # (Bl*K,)
            new_tok = tok.gather(1, pick).view(-1)  # (Bl*K,)
            best = new_scores[:, 0].tolist()
            for i, b in enumerate(live):
                if best[i] == -math.inf:  # every extension of every beam is ruled out
                    stuck.setdefault(b, t)
            last = t + 1 == N
            settled = [last or self._settled(hyps[b], best[i], t + 1) for i, b in enumerate(live)]
            keep_inputs = [i for i, s in enumerate(settled) if not s]
            if last:  # out of steps: the live beams of every unsettled input join its hypotheses
                last_lp = model_lp(new_src, new_tok)  # (R,)
                alive_lp = (sum_lp[new_src] + last_lp).tolist()
                scores, srcs, toks = new_scores.view(-1).tolist(), new_src.tolist(), new_tok.tolist()
                gens, lps, last_lps = gen[new_src].tolist(), token_lp[new_src].tolist(), last_lp.tolist()
                lp_end = length_penalty(N, cfg.length_penalty)
                for i, b in enumerate(live):
                    if len(hyps[b]) >= K and self._settled(hyps[b], best[i], t + 1):
                        continue
                    for j in range(i * K, (i + 1) * K):
                        self._keep(
                            hyps[b],
                            _Hyp(
                                scores[j] / lp_end,
                                alive_lp[j],
                                gens[j] + [toks[j]],
                                lps[j] + [last_lps[j]],
                                False,
                                (t, srcs[j]),
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
        return self._collect(hyps, n, device, trace, stuck)

    def _collect(
        self, hyps: list[list[_Hyp]], n: int, device, trace: _Trace | None, stuck: dict[int, int]
    ) -> GenerationOutput:
        """The n best hypotheses of every input as padded tensors.

        An input with fewer than n is an error, as in greedy decoding and sampling, never an empty
        ``-inf`` row: its beams were all ruled out (``stuck``) or fewer sequences exist than asked for.
        """
        chosen = []
        for b, per_input in enumerate(hyps):
            if len(per_input) < n:
                cfg = self.cfg
                if b in stuck:
                    raise ValueError(
                        f"at step {stuck[b] + 1} every token is ruled out for every beam of input {b + 1} "
                        f"(banned ids, no_repeat_ngram_size={cfg.no_repeat_ngram_size}, "
                        f"min_new_tokens={cfg.min_new_tokens}): relax them"
                    )
                raise ValueError(
                    f"beam search found {len(per_input)} sequences for input {b + 1}, fewer than "
                    f"num_return_sequences = {n}: ask for fewer, or allow more tokens"
                )
            chosen += per_input[:n]
        M = len(chosen)
        T = max((len(h.tokens) for h in chosen), default=0)
        seqs = torch.full((M, T), self.pad_id, dtype=torch.long)
        token_lp = torch.zeros(M, T)
        lengths = torch.zeros(M, dtype=torch.long)
        scores = torch.full((M,), -math.inf)
        log_probs = torch.full((M,), -math.inf)
        finished = torch.zeros(M, dtype=torch.bool)
        for m, h in enumerate(chosen):
            L = len(h.tokens)
            seqs[m, :L] = torch.tensor(h.tokens)
            token_lp[m, :L] = torch.tensor(h.token_log_probs)
            lengths[m], scores[m], log_probs[m], finished[m] = L, h.score, h.log_prob, h.finished
        attentions = None
        if trace is not None:
            attentions = [trace.back(*h.end) for h in chosen]
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

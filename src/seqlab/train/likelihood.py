"""The chain rule made concrete: the log-likelihood a language model gives a whole text.

    log P(x_1, ..., x_T) = log P(x_1) + sum_{t=2}^{T} log P(x_t | x_1, ..., x_{t-1})

A recurrent language model reads the text as one stream, carrying its state from chunk to chunk,
so every conditional sees the entire past (no window boundary cuts it off). The first token has
no past and the model has no start symbol, so P(x_1) comes from elsewhere: ``seqlab eval`` uses
the training part's unigram frequencies with add-one (Laplace) smoothing, so that a character
never seen in training still has a probability,

    P(x_1 = v) = (N_train(v) + 1) / (N_train + V),

and ``sequence_log_likelihood`` without ``first_probs`` the uniform 1 / V. All T tokens are
scored: per-token NLL = -log P / T (nats), perplexity = exp(NLL), bits per character = NLL / ln 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.markov import lidstone
from ..utils import eval_mode, log_likelihood_summary


def unigram_probs(train_ids: torch.Tensor, vocab_size: int, alpha: float = 1.0) -> torch.Tensor:
    """P(v) = (N(v) + alpha) / (N + alpha V) from the ids (N,) of a training text: (V,) float64, sums to 1."""
    counts = torch.bincount(train_ids.cpu(), minlength=vocab_size).double().numpy()  # (V,)
    return torch.from_numpy(lidstone(counts, alpha))


def _window_log_prob(model, x: torch.Tensor, y: torch.Tensor, context: int, device, batch: int = 32):
    """sum_t log P(y_t | x_{t-k+1..t}) with k >= context / 2 (all of x_<=t when shorter), and V.

    Windows of ``context`` tokens start every context / 2 tokens (the last one ends at the end of
    x); each window scores only the positions that no earlier window scored, so every token is
    scored once with at least half a window of past.
    """
    T, C = len(x), min(context, len(x))
    stride = max(C // 2, 1)
    starts = list(range(0, T - C + 1, stride))
    if starts[-1] + C < T:
        starts.append(T - C)
    first_scored = torch.tensor([0] + [s_prev + C - s for s_prev, s in zip(starts, starts[1:])])  # (N,) within window
    offsets = torch.tensor(starts)[:, None] + torch.arange(C)  # (N, C)
    total = torch.zeros((), dtype=torch.float64, device=device)
    V = None
    for i in range(0, len(starts), batch):
        xb, yb = x[offsets[i : i + batch]].to(device), y[offsets[i : i + batch]].to(device)  # (n, C) each
        logits = model(xb)[0]  # (n, C, V)
        log_p = F.log_softmax(logits.double(), dim=-1).gather(-1, yb.unsqueeze(-1)).squeeze(-1)  # (n, C)
        scored = torch.arange(C, device=device) >= first_scored[i : i + batch, None].to(device)  # (n, C)
        total += log_p[scored].sum()
        V = logits.shape[-1]
    return total, V


@torch.no_grad()
def sequence_log_likelihood(
    model: torch.nn.Module,
    ids: torch.Tensor,
    *,
    first_probs: torch.Tensor | None = None,
    chunk: int = 256,
    device: torch.device | str = "cpu",
    context: int | None = None,
) -> dict[str, float]:
    """log P(ids) = log P(ids[0]) + log P(ids[1:] | ids[0]) under a stream language model
    ``model(x, state=state) -> (logits, loss, state)``, or with ``context`` a window model
    ``model(x) -> (logits, loss)`` reading at most ``context`` tokens (a GPT's block_size), each
    token conditioned on at least ``context // 2`` tokens of its past (or all of a shorter past).

    ids: (T,) token ids. ``first_probs`` (V,): P(x_1), e.g. ``unigram_probs(train_ids, V)``;
    default uniform over the model's V outputs. Returns log_likelihood (nats), tokens (T),
    nll_per_token, perplexity and bits_per_char. The model runs in eval mode; its mode is restored.
    """
    if ids.dim() != 1 or len(ids) < 1:
        raise ValueError(f"expected a 1-D id sequence of at least 1 token, got shape {tuple(ids.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if context is not None and context < 1:
        raise ValueError(f"context must be >= 1, got {context}")
    x, y = ids[:-1], ids[1:]  # x_t predicts x_{t+1}
    state, V = None, None
    total = torch.zeros((), dtype=torch.float64, device=device)
    with eval_mode(model):
        if context is not None and len(x):
            total, V = _window_log_prob(model, x, y, context, device)
        for start in range(0, len(x) if context is None else 0, chunk):
            xb = x[start : start + chunk].to(device)[None]  # (1, c)
            yb = y[start : start + chunk].to(device)[None]  # (1, c)
            logits, _, state = model(xb, state=state)  # (1, c, V), state carried: the whole past conditions
            log_p = F.log_softmax(logits.double(), dim=-1)  # (1, c, V)
            total += log_p.gather(-1, yb.unsqueeze(-1)).sum()  # sum_t log P(x_{t+1} | x_<=t)
            V = logits.shape[-1]
    if first_probs is None:
        if V is None:  # a single token and no forward pass: ask the model for one step's width
            with eval_mode(model):
                V = model(ids[:1].to(device)[None])[0].shape[-1]
        first_probs = torch.full((V,), 1.0 / V, dtype=torch.float64)
    if first_probs.dim() != 1 or (V is not None and len(first_probs) != V):
        raise ValueError(
            f"expected first_probs of shape ({V if V is not None else 'V'},) over the vocabulary, "
            f"got {tuple(first_probs.shape)}"
        )
    ll = total.item() + torch.log(first_probs.double()[int(ids[0])]).item()  # + log P(x_1)
    return log_likelihood_summary(ll, len(ids))

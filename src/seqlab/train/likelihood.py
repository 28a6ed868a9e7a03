"""The chain rule made concrete: the log-likelihood a language model gives a whole text.

    log P(x_1, ..., x_T) = sum_t log P(x_t | x_1, ..., x_{t-1})

A recurrent language model reads the text as one stream, carrying its state from chunk to chunk,
so every conditional sees the entire past (no window boundary cuts it off). The first token has
no past and the model has no start symbol, so it is the condition, not a term:

    log P(x_2, ..., x_T | x_1) = sum_{t=2}^{T} log P(x_t | x_<t)

over T - 1 predicted tokens. From it: per-token NLL = -log P / (T - 1) (nats), perplexity =
exp(NLL), bits per character = NLL / ln 2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def sequence_log_likelihood(model: torch.nn.Module, ids: torch.Tensor, *, chunk: int = 256,
                            device: torch.device | str = "cpu") -> dict[str, float]:
    """log P(ids[1:] | ids[0]) under a stream language model ``model(x, state=state) -> (logits, loss, state)``.

    ids: (T,) token ids. Returns log_likelihood (nats), tokens (T - 1), nll_per_token,
    perplexity and bits_per_char. Train mode is restored afterwards.
    """
    if ids.dim() != 1 or len(ids) < 2:
        raise ValueError(f"expected a 1-D id sequence of at least 2 tokens, got shape {tuple(ids.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    was_training = model.training
    model.eval()
    x, y = ids[:-1], ids[1:]  # x_t predicts x_{t+1}
    state = None
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(x), chunk):
        xb = x[start:start + chunk].to(device)[None]  # (1, c)
        yb = y[start:start + chunk].to(device)[None]  # (1, c)
        logits, _, state = model(xb, state=state)  # (1, c, V), state carried: the whole past conditions
        log_p = F.log_softmax(logits.double(), dim=-1)  # (1, c, V)
        total += log_p.gather(-1, yb.unsqueeze(-1)).sum()  # sum_t log P(x_{t+1} | x_<=t)
    model.train(was_training)
    ll, n = total.item(), len(y)
    nll = -ll / n
    return {"log_likelihood": ll, "tokens": n, "nll_per_token": nll, "perplexity": math.exp(nll),
            "bits_per_char": nll / math.log(2)}

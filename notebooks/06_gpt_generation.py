# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. GPT and generation
#
# A GPT is the Transformer's decoder alone: a stack of masked self-attention blocks trained to
# predict each next token from the ones before it,
#
# $$\mathcal{L} = -\frac{1}{T} \sum_{t=1}^{T} \log P_\theta(x_{t+1} \mid x_1, \dots, x_t),$$
#
# all $T$ positions of a window at once thanks to the causal mask. Generation turns the model's
# distribution back into text, one token at a time. This notebook trains a small character GPT
# on Shakespeare, then compares the ways of choosing the next token (greedy, temperature, top-k,
# top-p, beam search), and shows that the key/value cache gives the same tokens as recomputing
# the whole prefix, faster.

# %%
import math
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from seqlab.data import CharLMConfig, build_char_lm
from seqlab.generate import generate, processors
from seqlab.models import GPT, GPTConfig

SCALE = float(os.environ.get("SEQLAB_NOTEBOOK_SCALE", "1"))  # multiplies the training budgets below
torch.manual_seed(0)


def shared_data(name: str) -> Path | None:
    """shared/data/NAME beside this checkout (the repository's ../shared), unless SEQLAB_NOTEBOOK_DATA=embedded."""
    if os.environ.get("SEQLAB_NOTEBOOK_DATA") == "embedded":
        return None
    found = [p / "shared" / "data" / name for p in (Path.cwd(), *Path.cwd().parents)]
    return next((p for p in found if p.is_dir()), None)


# %% [markdown]
# ## The data: characters of Shakespeare
#
# Tiny Shakespeare (1.1 M characters) when `shared/data/tinyshakespeare/input.txt` is beside this
# checkout; otherwise the 40,105-character sample embedded in seqlab. The vocabulary is every
# character of the text; training windows $x$ are $T$ ids and their targets $y$ the same window
# shifted by one.

# %%
T = 128
folder = shared_data("tinyshakespeare")
if folder is not None and (folder / "input.txt").is_file():
    splits = build_char_lm(CharLMConfig(path=str(folder / "input.txt"), seq_len=T))
    print("Tiny Shakespeare from", folder)
else:
    splits = build_char_lm(CharLMConfig(seq_len=T))
    print("Note: shared/data/tinyshakespeare not found, so this uses the embedded 40,105-character sample.")
info, vocab = splits.info, splits.info["vocab"]
x_train, y_train = splits.train.x, splits.train.y  # (N, T) each
x_val, y_val = splits.val.x, splits.val.y
V = info["vocab_size"]
print(f"vocabulary {V}; train windows {tuple(x_train.shape)} (N, T); characters {info['num_chars']}")
print(repr(vocab.decode(x_train[0][:60])))
assert torch.equal(x_train[0, 1:], y_train[0, :-1])  # targets: the next character

# %% [markdown]
# ## The model, and its parameters counted
#
# Token embedding $E \in \mathbb{R}^{V \times d}$ plus learned positions $P \in \mathbb{R}^{T \times d}$;
# then $L$ pre-LN blocks $x \leftarrow x + \operatorname{MHA}(\operatorname{LN}(x))$, $x \leftarrow x + \operatorname{FFN}(\operatorname{LN}(x))$;
# a final LayerNorm; logits $= h E^\top$ (the output layer shares the embedding's weights).
# A block has $4d^2 + 4d$ attention parameters ($W^Q, W^K, W^V, W^O$ and biases),
# $8d^2 + 5d$ in the feed-forward layer ($d \to 4d \to d$) and $4d$ in its two LayerNorms.

# %%
d, L = 64, 2
config = GPTConfig(vocab_size=V, block_size=T, d_model=d, num_heads=4, num_layers=L, dropout=0.0)
model = GPT(config)
n_params = sum(p.numel() for p in model.parameters())  # the tied output weight is counted once
by_formula = V * d + T * d + L * (12 * d * d + 13 * d) + 2 * d
print(f"{n_params:,} parameters (formula {by_formula:,})")
assert n_params == by_formula

# %% [markdown]
# ## Training
#
# A short budget of AdamW steps on random windows. Before training every character is about
# equally likely, a loss of $\ln V$; the unigram frequencies alone give the second baseline.

# %%
steps, batch_size = int(300 * SCALE), 16
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 30))
g = torch.Generator().manual_seed(0)
losses, start = [], time.perf_counter()
model.train()
for _ in range(steps):
    idx = torch.randint(len(x_train), (batch_size,), generator=g)
    _, loss = model(x_train[idx], y_train[idx])  # logits (B, T, V), mean loss over B*T
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    losses.append(loss.item())
model.eval()
with torch.no_grad():
    val_loss = sum(model(xb, yb)[1].item() * len(xb) for xb, yb in zip(x_val.split(64), y_val.split(64))) / len(x_val)
base = info["baseline"]
print(f"{steps} steps in {time.perf_counter() - start:.0f} s")
print(
    f"val loss {val_loss:.3f} nats/char = {val_loss / math.log(2):.3f} bits/char; "
    f"uniform {base['cross_entropy_uniform']:.3f}, unigram {base['cross_entropy_unigram']:.3f}"
)
assert val_loss < base["cross_entropy_unigram"] - 0.3
plt.figure(figsize=(6, 2.5))
plt.plot(losses, lw=0.8)
plt.axhline(base["cross_entropy_unigram"], color="k", ls="--", lw=0.8, label="unigram")
plt.xlabel("step")
plt.ylabel("nats/char")
plt.legend()
plt.show()

# %% [markdown]
# ## Greedy decoding is an argmax loop
#
# `generate` with its defaults is greedy: $x_{t+1} = \arg\max_v P(v \mid x_{\le t})$. The same loop
# written out over the model's ordinary forward must give the same text.

# %%
prompt = torch.tensor([vocab.encode("ROMEO:\n")])  # (1, P)
out = generate(model, prompt=prompt, max_new_tokens=80)
ids = prompt
with torch.no_grad():
    for _ in range(80):
        logits, _ = model(ids[:, -T:])  # (1, t, V)
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
print(repr("ROMEO:\n" + vocab.decode(out.sequences[0])))
assert torch.equal(out.sequences[0], ids[0, prompt.shape[1] :])

# %% [markdown]
# ## Temperature, top-k, top-p
#
# Sampling draws $x_{t+1}$ from the model's distribution, reshaped first:
#
# - **temperature** $\tau$: $P_\tau(v) \propto \exp(z_v / \tau)$; $\tau < 1$ sharpens, $\tau > 1$ flattens;
# - **top-k**: keep the $k$ most probable tokens, renormalise;
# - **top-p** (nucleus): keep the smallest set of most probable tokens whose total reaches $p$.
#
# Written from scratch on the distribution after "ROMEO:" and checked against
# `seqlab.generate.processors`, which `generate` applies.

# %%
with torch.no_grad():
    z = model(prompt)[0][:, -1]  # (1, V) logits of the next character


def entropy(logits):
    p = logits.softmax(-1)
    return -(p * p.clamp_min(1e-30).log()).sum().item()


temps = [0.5, 1.0, 1.5]
ents = [entropy(z / t) for t in temps]
print("entropy (nats) at temperature", dict(zip(temps, [round(e, 3) for e in ents])))
assert ents[0] < ents[1] < ents[2]

k = 5
kth = z.topk(k).values[:, -1:]  # (1, 1)
ours_k = z.masked_fill(z < kth, float("-inf"))
assert torch.equal(ours_k, processors.top_k(z, k)) and (ours_k > float("-inf")).sum() == k

p = 0.9
probs, order = z.softmax(-1).sort(descending=True)
keep = probs.cumsum(-1) - probs < p  # the token that crosses p is kept, nothing after it
ours_p = torch.full_like(z, float("-inf")).scatter(1, order[keep][None], z.gather(1, order[keep][None]))
assert torch.equal(ours_p, processors.top_p(z, p))
print(f"top-{k} keeps {k} characters; top-p {p} keeps {int(keep.sum())} of {V}")

fig, ax = plt.subplots(figsize=(9, 3))
top = order[0, :20]
labels = [repr(vocab.itos[i])[1:-1] for i in top]
for j, (name, logits) in enumerate((("τ = 1", z), ("τ = 0.5", z / 0.5), (f"top-p {p}", ours_p))):
    ax.bar([i + 0.27 * j for i in range(20)], logits.softmax(-1)[0, top], width=0.27, label=name)
ax.set_xticks(range(20), labels)
ax.set(ylabel="probability", title="Next character after 'ROMEO:\\n', the 20 most probable")
ax.legend()
plt.show()

# %% [markdown]
# Sampling with a seed is reproducible; lower temperatures give more predictable text.

# %%
for t in (0.5, 1.0):
    s = generate(model, prompt=prompt, max_new_tokens=80, temperature=t, top_k=40, seed=0)
    print(f"--- temperature {t}, top-k 40:\n{'ROMEO:' + chr(10) + vocab.decode(s.sequences[0])}")
again = generate(model, prompt=prompt, max_new_tokens=80, temperature=1.0, top_k=40, seed=0)
assert torch.equal(s.sequences, again.sequences)

# %% [markdown]
# ## Beam search
#
# Beam search keeps the $K$ most probable prefixes; for a language model it finds text of higher
# probability than greedy, and often duller text (repetition is probable). Log-probabilities of 40
# characters after eight prompts:

# %%
prompts = x_val[:8, :16]  # (8, 16): the first 16 characters of 8 validation windows
greedy = generate(model, prompt=prompts, max_new_tokens=40)
beam = generate(model, prompt=prompts, max_new_tokens=40, num_beams=4)
print(f"mean log P: greedy {greedy.log_probs.mean():.2f}, beam 4 {beam.log_probs.mean():.2f}")
print("beam:", repr(vocab.decode(prompts[0]) + vocab.decode(beam.sequences[0])))
assert beam.log_probs.mean() >= greedy.log_probs.mean()

# %% [markdown]
# ## The key/value cache: the same tokens, less work
#
# At step $t$ the new query attends to the keys and values of all earlier positions, which do not
# change: the cache keeps them, so each step feeds one token instead of the whole prefix
# ($O(T)$ instead of $O(T^2)$ tokens of work over $T$ steps). `use_cache=False` recomputes
# everything through the training-time forward. Same seed, same sampling: the same text, and
# the same log-probabilities to float rounding.


# %%
def timed(**kw):
    start = time.perf_counter()
    out = generate(model, prompt=prompts[:4, :8], max_new_tokens=T - 8, temperature=0.8, top_k=40, seed=1, **kw)
    return out, time.perf_counter() - start


cached, t_cached = timed(use_cache=True)
recomputed, t_recomputed = timed(use_cache=False)
print(
    f"{T - 8} tokens x 4 prompts: cached {t_cached:.2f} s, recomputed {t_recomputed:.2f} s "
    f"({t_recomputed / t_cached:.1f}x; a shared machine, one run)"
)
assert torch.equal(cached.sequences, recomputed.sequences)
assert torch.allclose(cached.token_log_probs, recomputed.token_log_probs, atol=1e-4)

# %% [markdown]
# `docs/results.md` trains the full preset (4 layers of 192, context 256, 5,200 steps on Tiny
# Shakespeare, 16 minutes on two CPU threads) to 1.488 nats/char on validation; the two small
# layers and few hundred steps here stop well above that. `docs/benchmarks.md` times the cache
# with `seqlab bench generate` (2.4x to 3.0x faster for 256 tokens on the 2-core build machine);
# the speed-up above is one run of a much smaller model.
#
# ## At full scale
#
# ```
# seqlab train configs/shakespeare_char_gpt.toml
# seqlab generate runs/<run> --prompt "ROMEO:" --temperature 0.8 --top-k 40
# seqlab bench generate
# ```

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. The vanilla RNN and backpropagation through time
#
# A recurrent network carries a hidden state $H_t$ from one step to the next. With a batch of $B$
# sequences side by side (row vectors, as in the lecture):
#
# $$H_t = \tanh(X_t W_{xh} + b_{xh} + H_{t-1} W_{hh} + b_{hh}), \qquad X_t \in \mathbb{R}^{B \times d},\; H_t \in \mathbb{R}^{B \times h}.$$
#
# The same weights are used at every step, so the gradient of a loss read at step $T$ flows back
# through every step: **backpropagation through time** (BPTT). This notebook writes the update
# out, checks it against `torch.nn.RNN`, does BPTT by hand against autograd, and then looks at
# what the repeated product of Jacobians does to the gradient: it vanishes or explodes.

# %%
import os

import matplotlib.pyplot as plt
import torch

import seqlab.nn as snn

SCALE = float(os.environ.get("SEQLAB_NOTEBOOK_SCALE", "1"))  # multiplies the training budgets below
_ = torch.manual_seed(0)  # `_ =`: else the cell would print the generator it returns

# %% [markdown]
# ## The update, written out, against `torch.nn.RNN`
#
# torch stores a weight as (out, in), so the lecture's $X_t W_{xh}$ is `F.linear(x_t, weight_ih)`.
# `seqlab.nn.rnn_step` is that one line; a loop over $t$ is the whole layer.

# %%
B, T, d, h = 3, 7, 4, 5
torch_rnn = torch.nn.RNN(d, h, batch_first=True)
x = torch.randn(B, T, d)  # (B, T, d)

w_ih, w_hh, b_ih, b_hh = torch_rnn.weight_ih_l0, torch_rnn.weight_hh_l0, torch_rnn.bias_ih_l0, torch_rnn.bias_hh_l0
H = torch.zeros(B, h)  # H_0 (B, h)
outputs = []
for t in range(T):
    H = torch.tanh(x[:, t] @ w_ih.T + b_ih + H @ w_hh.T + b_hh)  # H_t (B, h): the equation above
    outputs.append(H)
by_hand = torch.stack(outputs, dim=1)  # (B, T, h)

y_torch, h_n = torch_rnn(x)  # (B, T, h), (1, B, h)
ours = snn.RNN(d, h, batch_first=True, impl="reference")  # seqlab: rnn_step in a loop
ours.load_state_dict(torch_rnn.state_dict())  # same parameter names and layout
y_ours, _ = ours(x)
print("max |by hand - torch| =", (by_hand - y_torch).abs().max().item())
print("max |seqlab reference - torch| =", (y_ours - y_torch).abs().max().item())
assert torch.allclose(by_hand, y_torch, atol=1e-6) and torch.allclose(y_ours, y_torch, atol=1e-6)
assert torch.equal(h_n[0], y_torch[:, -1])  # the last state is the last output

# %% [markdown]
# ## BPTT by hand
#
# Take a loss on the last state only, $L = \tfrac12 \lVert H_T \rVert^2$, and write
# $A_t = X_t W_{xh} + H_{t-1} W_{hh} + b$ for the pre-activation. Going backwards from
# $\delta_T = \partial L / \partial H_T = H_T$:
#
# $$\frac{\partial L}{\partial A_t} = \delta_t \odot (1 - H_t^2), \qquad
# \frac{\partial L}{\partial W_{hh}} \mathrel{+}= H_{t-1}^\top \frac{\partial L}{\partial A_t}, \qquad
# \frac{\partial L}{\partial W_{xh}} \mathrel{+}= X_t^\top \frac{\partial L}{\partial A_t}, \qquad
# \delta_{t-1} = \frac{\partial L}{\partial A_t} W_{hh}^\top.$$
#
# The sums over $t$ are the weight sharing; the last line is the gradient travelling back in
# time. In float64 this must equal autograd to rounding.

# %%
torch.manual_seed(1)
B, T, d, h = 2, 6, 3, 4
X = torch.randn(B, T, d, dtype=torch.float64)
W_xh = (0.5 * torch.randn(d, h, dtype=torch.float64)).requires_grad_()
W_hh = (0.5 * torch.randn(h, h, dtype=torch.float64)).requires_grad_()
b = torch.zeros(h, dtype=torch.float64, requires_grad=True)

states = [torch.zeros(B, h, dtype=torch.float64)]  # H_0
for t in range(T):
    states.append(torch.tanh(X[:, t] @ W_xh + states[-1] @ W_hh + b))  # H_t (B, h)
loss = 0.5 * (states[-1] ** 2).sum()
loss.backward()

with torch.no_grad():
    dW_xh, dW_hh, db = torch.zeros_like(W_xh), torch.zeros_like(W_hh), torch.zeros_like(b)
    delta = states[-1].clone()  # dL/dH_T (B, h)
    for t in range(T, 0, -1):  # states[t] is H_t, X[:, t - 1] is X_t
        dA = delta * (1 - states[t] ** 2)  # (B, h)
        dW_hh += states[t - 1].T @ dA  # (h, h)
        dW_xh += X[:, t - 1].T @ dA  # (d, h)
        db += dA.sum(0)
        delta = dA @ W_hh.T  # dL/dH_{t-1}
for name, mine, auto in (("W_xh", dW_xh, W_xh.grad), ("W_hh", dW_hh, W_hh.grad), ("b", db, b.grad)):
    print(f"dL/d{name}: max |by hand - autograd| = {(mine - auto).abs().max().item():.2e}")
    assert torch.allclose(mine, auto, atol=1e-12)

# %% [markdown]
# ## The gradient norm through time: vanishing and exploding
#
# Unrolling the recursion for $\delta_t$ gives a product of Jacobians,
#
# $$\frac{\partial L}{\partial H_t} = \frac{\partial L}{\partial H_T} \prod_{s=t+1}^{T} \frac{\partial H_s}{\partial H_{s-1}}, \qquad
# \frac{\partial H_s}{\partial H_{s-1}} = \operatorname{diag}(1 - H_s^2)\, W_{hh}^\top .$$
#
# Its norm behaves like $r^{T-t}$ for some factor $r$: below 1 the signal from far back
# **vanishes**, above 1 it **explodes**. Take $W_{hh}$ a random orthogonal matrix times a gain $g$
# (its spectral radius). Without the $\tanh$ (the linearised RNN) each step back multiplies the
# gradient by $W_{hh}^\top$ exactly, so its norm is $g^{T-t}$ times the last one, to rounding.
# The $\tanh$ can only shrink it further ($0 < 1 - H_s^2 \le 1$): with $g > 1$ the state grows
# until $\tanh$ saturates, and the saturated steps stop the explosion by killing the gradient.


# %%
def grad_norms_through_time(gain: float, activation, T: int = 60, h: int = 32, seed: int = 0) -> list[float]:
    """||dL/dH_t|| for t = 1..T of L = sum(H_T), H_t = activation(X_t + H_{t-1} W_hh), W_hh = gain * orthogonal."""
    g = torch.Generator().manual_seed(seed)
    W_hh = gain * torch.linalg.qr(torch.randn(h, h, generator=g, dtype=torch.float64))[0]
    X = 0.1 * torch.randn(1, T, h, generator=g, dtype=torch.float64)  # (1, T, h), the inputs already projected
    X.requires_grad_()  # so that every H_t is part of a graph
    H, states = torch.zeros(1, h, dtype=torch.float64), []
    for t in range(T):
        H = activation(X[:, t] + H @ W_hh)  # (1, h)
        H.retain_grad()
        states.append(H)
    H.sum().backward()
    return [s.grad.norm().item() for s in states]


def linear(a):
    return a


gains = (0.8, 1.0, 1.2)
norms = {(g, "linear"): grad_norms_through_time(g, linear) for g in gains}
norms.update({(g, "tanh"): grad_norms_through_time(g, torch.tanh) for g in gains})
fig, ax = plt.subplots(figsize=(7, 3.5))
for (g, act), n in norms.items():
    ax.semilogy(range(1, len(n) + 1), n, "-" if act == "linear" else "--", label=f"{act}, gain {g}")
ax.set(xlabel="step t", ylabel="||dL/dH_t||", title="Gradient norm through time (loss at t = 60)")
ax.legend(fontsize=8, ncol=2)
plt.show()
for (g, act), n in norms.items():
    print(f"{act:>6}, gain {g}: ||dL/dH_1|| / ||dL/dH_T|| = {n[0] / n[-1]:9.3g}   (g^59 = {g**59:.3g})")
for g in gains:  # linear: exactly g^(T - t) per step back
    assert abs(norms[(g, "linear")][0] / norms[(g, "linear")][-1] / g**59 - 1) < 1e-6
assert norms[(0.8, "tanh")][0] / norms[(0.8, "tanh")][-1] < 0.8**59  # vanishing, faster than linear
assert norms[(1.2, "tanh")][0] / norms[(1.2, "tanh")][-1] < 1.2**59 / 1e3  # saturation: far from exploding


# %% [markdown]
# ## Clipping the exploding gradient
#
# Clipping by global norm rescales the whole gradient when its norm $\lVert g \rVert$ exceeds a
# threshold $\theta$: $g \leftarrow g \cdot \min(1, \theta / \lVert g \rVert)$. The direction is
# kept, only the step is shortened. `torch.nn.utils.clip_grad_norm_` does it, and seqlab's
# trainer calls it with `train.grad_clip`.

# %%
torch.manual_seed(2)
rnn = snn.RNN(8, 32, batch_first=True)
with torch.no_grad():
    rnn.weight_hh_l0.mul_(6.0)  # a badly scaled recurrence
out, _ = rnn(torch.randn(4, 50, 8))
out[:, 0].sum().backward()  # pretend the loss was read early: gradient through the big W_hh
before = [p.grad.clone() for p in rnn.parameters()]
total = torch.nn.utils.clip_grad_norm_(rnn.parameters(), max_norm=1.0)
after = [p.grad for p in rnn.parameters()]
clipped_norm = torch.cat([g.flatten() for g in after]).norm()
print(f"norm before {total:.3g}, after {clipped_norm:.4f}")
assert abs(clipped_norm - 1.0) < 1e-4
cos = torch.nn.functional.cosine_similarity(
    torch.cat([g.flatten() for g in before]), torch.cat([g.flatten() for g in after]), dim=0
)
assert cos > 1 - 1e-6  # same direction

# %% [markdown]
# ## Truncated BPTT and what it cuts
#
# For long streams (a language model over a book) the state is carried forward, but the graph
# is cut every $k$ steps: `seqlab.nn.detach_state` keeps the value of the state and drops its
# history. The forward pass is unchanged; the gradient of a loss at step $T$ reaches only the
# last $k$ inputs. We feed 40 steps in chunks of $k = 10$ and look at $\lVert \partial L / \partial X_t \rVert$.

# %%
torch.manual_seed(3)
lstm = snn.LSTM(4, 16, batch_first=True)
x = torch.randn(2, 40, 4, requires_grad=True)  # (B, T, d)


def last_step_loss(k: int | None):
    """Run x in chunks of k steps (None: one chunk), detaching the state between chunks."""
    state, outs = None, []
    for chunk in x.split(k or x.shape[1], dim=1):
        y, state = lstm(chunk, state)
        state = snn.detach_state(state)  # truncated BPTT: keep the value, cut the graph
        outs.append(y)
    return torch.cat(outs, dim=1), outs[-1][:, -1].sum()


full_out, full_loss = last_step_loss(None)
(g_full,) = torch.autograd.grad(full_loss, x)
cut_out, cut_loss = last_step_loss(10)
(g_cut,) = torch.autograd.grad(cut_loss, x)
print("forward outputs equal:", torch.allclose(full_out, cut_out, atol=1e-6))
assert torch.allclose(full_out, cut_out, atol=1e-6)  # truncation changes the gradient only
n_full, n_cut = g_full.norm(dim=(0, 2)), g_cut.norm(dim=(0, 2))  # (T,)
assert (n_cut[:30] == 0).all() and (n_cut[30:] > 0).all()  # nothing before the last chunk
assert torch.allclose(n_cut[30:], n_full[30:], atol=1e-6)  # the last chunk's gradient is exact

fig, ax = plt.subplots(figsize=(7, 3))
ax.semilogy(range(1, 41), n_full, "o-", ms=3, label="full BPTT")
ax.semilogy(range(31, 41), n_cut[30:], "s-", ms=3, label="truncated, k = 10")
ax.set(xlabel="input step t", ylabel="||dL/dX_t||", title="What truncation cuts (loss at t = 40)")
ax.legend()
plt.show()

# %% [markdown]
# The cut loses only the part of the gradient that reached further back than $k$ steps, which
# the plot shows was already small for this untrained LSTM; a model that needs those
# dependencies cannot learn them through a truncated gradient. `docs/results.md` (section 3)
# measures the trade on a character LSTM: $k = 32$ reached 2.907 bits/char, $k = 8$ 3.294 (more
# updates, shorter memory), full BPTT over the whole stream 4.349 (15 updates in 15 epochs).
#
# ## At full scale
#
# The gradient norm through time of trained and freshly initialised RNN, LSTM, GRU cells on the
# adding problem (T = 100), and truncated BPTT on a character language model:
#
# ```
# seqlab train configs/adding_lstm.toml --data.seq_len=100 --train.max_steps=2000 --name adding100
# seqlab plot runs/adding100-* --what gradflow
# seqlab train configs/charlm_lstm.toml --train.tbptt_steps=32
# ```

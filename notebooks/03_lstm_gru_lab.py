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
# # 3. LSTM and GRU, and the lab
#
# Notebook 2 showed the vanilla RNN's gradient shrinking by a factor per step. The LSTM answers
# with a **cell state** $C_t$ that is updated additively, under gates that decide what to forget,
# what to write and what to show:
#
# $$
# \begin{aligned}
# F_t &= \sigma(X_t W_{xf} + H_{t-1} W_{hf} + b_f) && \text{forget gate}\\
# I_t &= \sigma(X_t W_{xi} + H_{t-1} W_{hi} + b_i) && \text{input gate}\\
# \tilde C_t &= \tanh(X_t W_{xc} + H_{t-1} W_{hc} + b_c) && \text{candidate}\\
# C_t &= F_t \odot C_{t-1} + I_t \odot \tilde C_t && \text{cell update}\\
# O_t &= \sigma(X_t W_{xo} + H_{t-1} W_{ho} + b_o) && \text{output gate}\\
# H_t &= O_t \odot \tanh(C_t)
# \end{aligned}
# $$
#
# With $F_t \approx 1$ and $I_t \approx 0$ the cell passes $C_{t-1}$ through unchanged, and so
# does the gradient. The GRU does the same with two gates and no separate cell:
#
# $$
# R_t = \sigma(X_t W_{xr} + H_{t-1} W_{hr} + b_r),\quad
# Z_t = \sigma(X_t W_{xz} + H_{t-1} W_{hz} + b_z),\quad
# \tilde H_t = \tanh(X_t W_{xh} + b_{xh} + R_t \odot (H_{t-1} W_{hh} + b_{hh})),\quad
# H_t = Z_t \odot H_{t-1} + (1 - Z_t) \odot \tilde H_t .
# $$
#
# (torch's form of the candidate, written out below: the reset gate multiplies the recurrent
# product together with its bias.)
#
# Then the lab: an LSTM of 2 layers of 256 reads each 28x28 MNIST digit row by row and
# classifies it from its last state, **821,770 parameters**.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import seqlab.nn as snn
from seqlab.data import DigitsConfig, MnistConfig, build_mnist, digits
from seqlab.data.synthetic import adding_problem
from seqlab.diagnostics.gradflow import model_grad_norms
from seqlab.models import ClassifierConfig, RecurrentForecaster, RecurrentForecasterConfig, SequenceClassifier

SCALE = float(os.environ.get("SEQLAB_NOTEBOOK_SCALE", "1"))  # multiplies the training budgets below
torch.manual_seed(0)


def shared_data(name: str) -> Path | None:
    """shared/data/NAME beside this checkout (the repository's ../shared), unless SEQLAB_NOTEBOOK_DATA=embedded."""
    if os.environ.get("SEQLAB_NOTEBOOK_DATA") == "embedded":
        return None
    found = [p / "shared" / "data" / name for p in (Path.cwd(), *Path.cwd().parents)]
    return next((p for p in found if p.is_dir()), None)


# %% [markdown]
# ## The gates written out, against `torch.nn.LSTM` and `torch.nn.GRU`
#
# torch stacks the four LSTM blocks in one matrix in the order $i, f, g, o$ (and the GRU's as
# $r, z, n$), so a step cuts the product into blocks first. Everything else is the equations.

# %%
B, T, d, h = 3, 6, 5, 4
x = torch.randn(B, T, d)  # (B, T, d)

lstm = torch.nn.LSTM(d, h, batch_first=True)
W_x, W_h, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0  # (4h, d), (4h, h), (4h,)
H, C = torch.zeros(B, h), torch.zeros(B, h)
for t in range(T):
    a_i, a_f, a_g, a_o = (x[:, t] @ W_x.T + H @ W_h.T + b).chunk(4, dim=1)  # 4 x (B, h)
    F_t, I_t = torch.sigmoid(a_f), torch.sigmoid(a_i)
    C_tilde, O_t = torch.tanh(a_g), torch.sigmoid(a_o)
    C = F_t * C + I_t * C_tilde  # cell update
    H = O_t * torch.tanh(C)
_, (h_n, c_n) = lstm(x)
print(
    "LSTM: max |H_T - torch| =",
    (H - h_n[0]).abs().max().item(),
    " max |C_T - torch| =",
    (C - c_n[0]).abs().max().item(),
)
assert torch.allclose(H, h_n[0], atol=1e-6) and torch.allclose(C, c_n[0], atol=1e-6)

gru = torch.nn.GRU(d, h, batch_first=True)
H = torch.zeros(B, h)
for t in range(T):
    x_r, x_z, x_n = F.linear(x[:, t], gru.weight_ih_l0, gru.bias_ih_l0).chunk(3, dim=1)
    h_r, h_z, h_n_ = F.linear(H, gru.weight_hh_l0, gru.bias_hh_l0).chunk(3, dim=1)
    R_t, Z_t = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    H_tilde = torch.tanh(x_n + R_t * h_n_)  # torch's variant: the reset gate after the matmul
    H = Z_t * H + (1 - Z_t) * H_tilde
_, h_n = gru(x)
print("GRU:  max |H_T - torch| =", (H - h_n[0]).abs().max().item())
assert torch.allclose(H, h_n[0], atol=1e-6)

# %% [markdown]
# seqlab's layers are drop-in for torch's (same arguments, parameter names and shapes).
# `impl="reference"` runs the equations of `seqlab.nn.lstm_step` one step at a time and can
# return every gate, shaped (B, T, h) per layer.

# %%
ref = snn.LSTM(d, h, num_layers=2, batch_first=True, impl="reference")
torch_lstm2 = torch.nn.LSTM(d, h, num_layers=2, batch_first=True)
ref.load_state_dict(torch_lstm2.state_dict())
y_ref, (h_ref, c_ref), gates = ref(x, return_gates=True)
y_torch, (h_torch, c_torch) = torch_lstm2(x)
print("seqlab reference vs torch, 2 layers: max diff", (y_ref - y_torch).abs().max().item())
print({layer: {name: tuple(g.shape) for name, g in gs.items()} for layer, gs in gates.items()})
assert torch.allclose(y_ref, y_torch, atol=1e-5) and torch.allclose(c_ref, c_torch, atol=1e-5)

# %% [markdown]
# ## The lab model: 821,770 parameters, counted
#
# Each LSTM layer has four blocks, each with an input matrix, a recurrent matrix and (in torch's
# layout) two bias vectors: $4\,(h\,d_\text{in} + h^2 + 2h)$. The first layer reads 28 pixels, the
# second the first's 256 outputs, and a linear layer maps the top layer's last $H_T$ to 10 classes.

# %%
lab_config = ClassifierConfig(cell="lstm", input_size=28, hidden_size=256, num_layers=2, num_classes=10)
lab = SequenceClassifier(lab_config)
n_params = sum(p.numel() for p in lab.parameters())


def lstm_layer(d_in: int, h: int) -> int:
    return 4 * (h * d_in + h * h + 2 * h)


by_formula = lstm_layer(28, 256) + lstm_layer(256, 256) + (256 * 10 + 10)
print(
    f"parameters: {n_params:,} (formula: {lstm_layer(28, 256):,} + {lstm_layer(256, 256):,} + 2,570 = {by_formula:,})"
)
assert n_params == by_formula == 821_770

# %% [markdown]
# ## Training it for a short budget
#
# The lab's data is MNIST (60,000 digits of 28 rows of 28 pixels). When the MNIST files are in
# `shared/data/mnist` beside this checkout, the notebook uses them; otherwise it falls back to the
# 8x8 digits that ship inside seqlab (1,797 images, 8 rows of 8 pixels), with the same model
# apart from its 8-wide input. A few hundred steps of 32 images, Adam, gradient clipping: a
# plain PyTorch loop over the model's contract `model(x, targets) -> (logits, loss)`.

# %%
mnist_root = shared_data("mnist")
if mnist_root is not None:
    splits = build_mnist(MnistConfig(root=str(mnist_root), view="rows"))
    print(f"MNIST from {mnist_root}")
else:
    splits = digits(DigitsConfig(view="rows"))
    print("Note: MNIST not found (shared/data/mnist), so this runs on the embedded 8x8 digits instead.")
x_train, y_train = splits.train.tensors
x_test, y_test = splits.test.tensors
print("train x:", tuple(x_train.shape), "(N, T rows, pixels per row); test:", len(x_test))

torch.manual_seed(0)
model = SequenceClassifier(ClassifierConfig(cell="lstm", input_size=x_train.shape[-1], hidden_size=256, num_layers=2))


def train(model, steps: int, lr: float = 2e-3, batch_size: int = 32) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x_train), (batch_size,), generator=g)
        _, loss = model(x_train[idx], y_train[idx])  # x (B, T, d), y (B,)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def accuracy(model) -> float:
    model.eval()
    logits = torch.cat([model(xb)[0] for xb in x_test.split(1000)])  # (N, 10)
    return (logits.argmax(-1) == y_test).float().mean().item()


steps = int(300 * SCALE)
losses = train(model, steps)
acc = accuracy(model)
print(f"{steps} steps: loss {sum(losses[:20]) / 20:.3f} -> {sum(losses[-20:]) / 20:.3f}, test accuracy {acc:.2%}")
assert acc > 0.8  # chance is 10%

plt.figure(figsize=(6, 2.5))
plt.plot(losses, lw=0.8)
plt.xlabel("step")
plt.ylabel("cross-entropy")
plt.title("Training loss of the lab model")
plt.show()

# %% [markdown]
# `docs/results.md` (section 4) trains the lab preset on MNIST for 3 epochs (5,157 steps of 32)
# and reaches **99.14%**; the few hundred steps here are a few percent of that budget, so the
# accuracy above is lower, and on the 8x8 digits it is a different (smaller) test set.
#
# ## What the gates do on one digit
#
# `SequenceClassifier.gates(x)` returns every gate of every layer. Read the maps with the equations:
# where $F_t$ is near 1 a unit keeps its cell, where $I_t$ is near 1 it writes the row's candidate in.
# After the short training above most forget gates still sit near $\sigma(0) = 0.5$, where torch's
# initialisation starts them (the line printed under the figure): each unit keeps about half its cell
# per row. What that costs over long sequences, and how to start the forget gate open, is the last
# part of this notebook.

# %%
example = x_test[:1]  # (1, T, d)
g = model.gates(example)["l0"]  # {"forget": (1, T, 256), ...}
assert all(((v > 0) & (v < 1)).all() for k, v in g.items() if k in ("forget", "input", "output"))
assert ((g["candidate"] > -1) & (g["candidate"] < 1)).all()
fig, axes = plt.subplots(1, 4, figsize=(13, 3))
axes[0].imshow(example[0], cmap="gray_r")
axes[0].set_title(f"the digit (label {y_test[0].item()})")
for ax, name in zip(axes[1:], ("forget", "input", "output")):
    im = ax.imshow(g[name][0, :, :64].T, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set(title=f"{name} gate, layer 1", xlabel="row t")
axes[1].set_ylabel("unit (the first 64)")
fig.colorbar(im, ax=axes[1:].tolist(), shrink=0.8)
plt.show()
forget = g["forget"][0]  # (T, 256)
print(
    f"layer 1 on this digit: mean forget gate {forget.mean():.2f}, "
    f"{(forget > 0.9).float().mean():.1%} of its values above 0.9; mean input gate {g['input'].mean():.2f}"
)

# %% [markdown]
# ## LSTM vs GRU
#
# The GRU has three weight blocks where the LSTM has four: at equal hidden size it has exactly
# 3/4 of the recurrent parameters. Trained for the same short budget on the same data, a one-layer
# model of 64 units of each:

# %%
results = {}
for cell in ("lstm", "gru"):
    torch.manual_seed(0)
    m = SequenceClassifier(ClassifierConfig(cell=cell, input_size=x_train.shape[-1], hidden_size=64))
    recurrent = sum(p.numel() for p in m.rnn.parameters())
    train(m, int(300 * SCALE), lr=5e-3)
    results[cell] = (recurrent, accuracy(m))
    print(f"{cell}: {recurrent:,} recurrent parameters, test accuracy {results[cell][1]:.2%}")
assert results["gru"][0] * 4 == results["lstm"][0] * 3
assert min(results["lstm"][1], results["gru"][1]) > 0.7

# %% [markdown]
# On row-wise MNIST `docs/results.md` (section 5) finds them within a fraction of a percent of
# each other: 98.21% (LSTM, 82,186 parameters) and 98.17% (GRU, 61,962) at hidden size 128.
#
# ## Long range: the adding problem, and how the LSTM is initialised
#
# The adding problem hides two marked numbers in a sequence of $T$ random values; the target is
# their sum, read from the last state, so the first marker can lie $T - 1$ steps back. Predicting
# the mean gives MSE 0.167, the baseline to beat. Whether an LSTM learns it at all depends on where
# its forget gate starts. torch draws every bias from $U(-1/\sqrt{h}, 1/\sqrt{h})$, so
# $F_t \approx \sigma(0) = 0.5$: the cell keeps half of itself per step, and the gradient through it
# falls off geometrically over $k$ steps (the cell alone passes a factor $F_t \approx 0.5$ a step; the
# measurement below, all paths included, finds about 0.6). Two remedies change only the initial biases:
#
# - **forget bias** (Gers, Schmidhuber & Cummins 2000): $b_f \leftarrow b_f + 1$, so $F_t$ starts near
#   $\sigma(1) = 0.73$;
# - **chrono** (Tallec & Ollivier 2018, "Can recurrent neural networks warp time?"), with $T_\text{max}$
#   the longest dependency the data can hold, one draw per unit $j$:
#
# $$
# b_f^{(j)} = \log u_j, \qquad b_i^{(j)} = -b_f^{(j)}, \qquad u_j \sim U(1,\ T_\text{max} - 1).
# $$
#
# A unit that keeps $a = \sigma(b_f)$ of its cell per step has time constant $1/(1 - a) = 1 + u_j$,
# so the units' memories spread over $2 \dots T_\text{max}$ steps instead of all sitting at 2.
# `seqlab.nn.init_recurrent_(module, init=..., forget_bias=..., chrono_max=...)` applies either in
# place (the config keys `model.init`, `model.forget_bias`, `model.chrono_max` call it; see
# `docs/initialisation.md`). Here one LSTM forecaster of 64 units, initialised three ways:

# %%
T_add, hidden = 100, 64
inits = {"default": {}, "forget bias 1": {"forget_bias": 1.0}, "chrono": {"init": "chrono", "chrono_max": T_add}}
forecasters = {}
for name, opts in inits.items():
    torch.manual_seed(0)
    m = RecurrentForecaster(RecurrentForecasterConfig(cell="lstm", input_size=2, hidden_size=hidden))
    forecasters[name] = snn.init_recurrent_(m, **opts)  # in place; returns the module

x_add, y_add = adding_problem(64, T_add, 0)  # x (64, T, 2) [value, marker], y (64, 1)
fig, ax = plt.subplots(figsize=(6, 2.5))
mean_forget = {}
for name, m in forecasters.items():
    b_f = (m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0).detach().chunk(4)[1]  # (h,): blocks i, f, g, o
    with torch.no_grad():
        _, _, gates = m.rnn(x_add, return_gates=True)  # {"l0": {"forget": (64, T, h), ...}}
    mean_forget[name] = gates["l0"]["forget"].mean().item()
    ax.hist(b_f.numpy(), bins=30, alpha=0.6, label=f"{name}: mean F_t {mean_forget[name]:.3f}")
    print(
        f"{name:>13}: b_f in [{b_f.min():.2f}, {b_f.max():.2f}], mean forget gate on the batch {mean_forget[name]:.3f}"
    )
ax.set(xlabel="forget-gate bias $b_f$ (input + recurrent)", ylabel="units", title="The forget gate at init")
ax.legend(fontsize=8)
plt.show()
assert 0.45 < mean_forget["default"] < 0.55 and 0.68 < mean_forget["forget bias 1"] < 0.78
assert mean_forget["chrono"] > 0.9

# %% [markdown]
# What reaches the first step: $\lVert \partial L / \partial H_t \rVert$ at every step $t$ of one
# batch at $T = 100$, the loss read at the last step, before any training
# (`seqlab.diagnostics.gradflow.model_grad_norms`, the measurement behind `docs/results.md` section 2).

# %%
norms = {name: model_grad_norms(m, x_add, y_add) for name, m in forecasters.items()}  # T norms each
reach = {name: n[0] / n[-1] for name, n in norms.items()}  # ||dL/dH_1|| / ||dL/dH_T||
plt.figure(figsize=(6, 2.5))
for name, n in norms.items():
    plt.semilogy(range(1, T_add + 1), n, label=f"{name}: first / last {reach[name]:.1e}")
plt.xlabel("step t")
plt.ylabel(r"$\|\partial L / \partial H_t\|$")
plt.title(f"Gradient through time at init, adding problem T = {T_add}")
plt.legend(fontsize=8)
plt.show()
print(", ".join(f"{k} {v:.2g}" for k, v in reach.items()))
assert reach["default"] < 1e-15 and reach["chrono"] > 1e-5  # vanished vs kept, 100 steps back
assert reach["chrono"] > 1e3 * reach["forget bias 1"] > 1e6 * reach["default"]  # chrono >> bias 1 >> default

# %% [markdown]
# With torch's default, the first step gets about $10^{-20}$ of the last step's gradient: the
# markers early in the sequence send no signal to the weights. A forget bias of 1 lifts that by
# about thirteen orders of magnitude, chrono by about four more. Training shows the same:
# `docs/results.md` (section 1) trains on the adding problem for 2,000 steps, where the chrono LSTM
# ends below a tenth of the 0.167 baseline at every $T$ from 50 to 400, while the LSTM with torch's
# initialisation stays at the baseline at $T$ = 200 and 400 (the tanh RNN never leaves it; the GRU
# solves $T = 400$). Training is left out here; it takes minutes, not seconds.

# %% [markdown]
# ## At full scale
#
# The lab exactly (needs the MNIST files; 99.14% after 3 epochs in `docs/results.md`), LSTM
# against GRU at equal hidden size and at equal parameter count, and the chrono LSTM on the adding
# problem at T = 200:
#
# ```
# seqlab train configs/mnist_lab.toml
# seqlab compare configs/mnist_lstm.toml --models lstm,gru --match params --seeds 1
# seqlab train configs/adding_lstm.toml --data.seq_len=200 --model.init=chrono
# ```

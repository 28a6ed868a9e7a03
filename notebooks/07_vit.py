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
# # 7. The Vision Transformer (short)
#
# An image becomes a sequence by cutting it into $N$ patches of $p \times p$ pixels, flattening
# each and projecting it to $d_\text{model}$; a learned class token goes in front and learned
# positions are added:
#
# $$z_0 = [x_\text{class};\, x_p^1 E;\, \dots;\, x_p^N E] + E_\text{pos}, \qquad E \in \mathbb{R}^{p^2 C \times d},\; E_\text{pos} \in \mathbb{R}^{(N+1) \times d}.$$
#
# A Transformer encoder reads the $N + 1$ tokens and a linear head classifies the class token.
# Here: the 8x8 digits embedded in seqlab, patches of 2x2, so a sequence of 16 patches.

# %%
import os

import matplotlib.pyplot as plt
import torch

from seqlab.data import DigitsConfig, digits
from seqlab.diagnostics.attention import attention_rollout
from seqlab.models import ViT

SCALE = float(os.environ.get("SEQLAB_NOTEBOOK_SCALE", "1"))  # multiplies the training budgets below
_ = torch.manual_seed(0)  # `_ =`: else the cell would print the generator it returns

# %% [markdown]
# ## Patches as a sequence
#
# `ViT.patchify` is the einops pattern `'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'`: patches in
# row-major order, each flattened row by row. Written with two loops, it must give the same.

# %%
splits = digits(DigitsConfig(view="rows"))
x_train, y_train = splits.train.tensors  # (N, 8, 8) images
x_test, y_test = splits.test.tensors
model = ViT(image_size=8, patch_size=2, num_classes=10, d_model=32, depth=2, num_heads=4, d_ff=64)
patches = model.patchify(x_test[:1])  # (1, 16, 4)
by_hand = torch.stack([x_test[0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].flatten() for i in range(4) for j in range(4)])
print("image", tuple(x_test[:1].shape), "-> patches", tuple(patches.shape), "(B, N, p*p*C)")
assert torch.equal(patches[0], by_hand)

fig, axes = plt.subplots(1, 2, figsize=(7, 2.5), gridspec_kw={"width_ratios": [1, 3]})
axes[0].imshow(x_test[0], cmap="gray_r")
axes[0].set_title("8x8 digit")
axes[1].imshow(patches[0].T, cmap="gray_r", aspect="auto")
axes[1].set(title="as 16 tokens of 4 pixels", xlabel="patch n (row-major)", ylabel="pixel in patch")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## A short training run

# %%
opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
g = torch.Generator().manual_seed(0)
steps = int(300 * SCALE)
for _ in range(steps):
    idx = torch.randint(len(x_train), (32,), generator=g)
    _, loss = model(x_train[idx], y_train[idx])  # logits (B, 10)
    opt.zero_grad()
    loss.backward()
    opt.step()
model.eval()
with torch.no_grad():
    acc = (model(x_test)[0].argmax(-1) == y_test).float().mean().item()
print(f"{steps} steps: test accuracy {acc:.1%}")
assert acc > 0.7

# %% [markdown]
# ## Attention rollout
#
# Which patches does the class token draw on, through all layers? Attention rollout (Abnar &
# Zuidema 2020) averages each layer's heads, adds the residual connection as an identity, and
# multiplies the layers:
#
# $$\tilde A_l = \tfrac12 I + \tfrac12 \operatorname{mean}_\text{heads}(A_l)\ (\text{rows renormalised}), \qquad R = \tilde A_L \cdots \tilde A_1 .$$
#
# Row 0 of $R$, without the class token itself, is a map over the 16 patches.

# %%
weights = model.attention_weights(x_test[:8])  # depth x (B, heads, N + 1, N + 1)
R = None
for A in weights:
    A_tilde = 0.5 * torch.eye(17) + 0.5 * A.mean(1)  # (B, 17, 17)
    A_tilde = A_tilde / A_tilde.sum(-1, keepdim=True)
    R = A_tilde if R is None else A_tilde @ R
assert torch.allclose(R, attention_rollout(weights), atol=1e-6)
assert torch.allclose(R.sum(-1), torch.ones(8, 17), atol=1e-5)  # each row still a distribution

fig, axes = plt.subplots(2, 4, figsize=(9, 4.5))
for b in range(4):
    axes[0, b].imshow(x_test[b], cmap="gray_r")
    axes[0, b].set_title(f"label {y_test[b].item()}")
    im = axes[1, b].imshow(R[b, 0, 1:].reshape(4, 4), cmap="magma", vmin=0, vmax=R[:4, 0, 1:].max())
    axes[1, b].set_title("rollout of the class token", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
plt.tight_layout()
fig.colorbar(im, ax=axes[1].tolist(), shrink=0.8, label="share of the class token")
plt.show()

# %% [markdown]
# ## At full scale
#
# ```
# seqlab train configs/digits_vit.toml
# seqlab plot runs/<run> --what attention       # per-head maps and the rollout
# ```

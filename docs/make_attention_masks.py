"""Draws docs/attention_masks.png, the picture of seqlab's mask convention in docs/attention.md.

PYTHONPATH=src python docs/make_attention_masks.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from seqlab.nn import masks  # noqa: E402

T = 6
causal = masks.causal_mask(T)  # (T, T)
padding = masks.key_padding_mask(torch.tensor([4]), T)[0, 0].expand(T, T)  # keys 4, 5 are padding
both = masks.combine(causal, padding)
# (title, may-attend mask that sets the colour, the values stored in the mask that the letters show)
panels = [
    ("seqlab: causal_mask(6)", causal, causal),
    ("seqlab: key_padding_mask([4], 6)\n(B, 1, 1, T_k), broadcast", padding, padding),
    ("seqlab: combine(causal, padding)", both, both),
    ("torch.nn.MultiheadAttention: the same\nmask stored as True = ignore", both, ~both),
]

fig, axes = plt.subplots(1, 4, figsize=(10, 3.5))
cmap = ListedColormap(["#d9d9d9", "#2b6cb0"])
for ax, (title, allowed, stored) in zip(axes, panels):
    ax.imshow(allowed.int().numpy(), cmap=cmap, vmin=0, vmax=1)
    for i in range(T):
        for j in range(T):
            ax.text(
                j,
                i,
                "T" if stored[i, j] else "F",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if allowed[i, j] else "black",
            )
    ax.set_title(title, fontsize=8)
    ax.set_xticks(range(T))
    ax.set_yticks(range(T))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("key j", fontsize=8)
axes[0].set_ylabel("query i", fontsize=8)
fig.suptitle(
    "blue: query i may attend to key j. seqlab stores True there (a float mask is added instead); "
    "torch's MultiheadAttention stores False",
    fontsize=9,
)
fig.tight_layout(rect=(0, 0.02, 1, 0.93))
out = Path(__file__).with_name("attention_masks.png")
fig.savefig(out, dpi=80)
print(f"wrote {out} ({out.stat().st_size} bytes)")

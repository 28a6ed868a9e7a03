"""Attention maps per layer and head with the tokens on the axes, each head's entropy, ViT rollout.

Every seqlab attention returns its weights when asked (``need_weights=True``; nothing is kept on
the modules), as lists of per-layer tensors (B, heads, T_q, T_k):

- ``seqlab.nn.TransformerEncoder`` / ``DecoderOnlyStack``: ``[(B, H, T, T)]``;
- ``seqlab.nn.Transformer``: ``{"encoder": [...], "decoder": [(self, cross), ...]}``;
- ``seq2seq_transformer`` ``forward(x, y, need_weights=True)``: ``{"encoder", "self", "cross"}``;
  ``seq2seq_rnn``: ``{"cross": (B, T, S)}`` (one alignment, no heads);
- ``vit`` and ``transformer_forecaster``: ``attention_weights(x)``;
- a decoder (``gpt``) through the decoding contract: ``decode_step(..., need_weights=True)``
  gives each new query's row, ``{"self": [(B, H, t) per layer]}``; :func:`causal_maps` stacks them.

:class:`AttentionMap` is one kind of attention for one example, (L, H, T_q, T_k) with its tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..utils import eval_mode

KINDS = {  # kind -> (file stem, what it is)
    "encoder": ("attention_encoder", "encoder self-attention"),
    "decoder_self": ("attention_decoder_self", "masked (causal) decoder self-attention"),
    "cross": ("attention_cross", "encoder-decoder attention (alignment)"),
    "causal": ("attention_causal", "causal self-attention (decoder-only)"),
    "vit": ("attention_vit", "ViT self-attention over patches"),
    "window": ("attention_window", "self-attention over the input window"),
}


@dataclass
class AttentionMap:
    """weights (L, H, T_q, T_k) of one example: row i is how query token i spreads its attention over the keys."""

    kind: str
    weights: Tensor
    query_tokens: list[str]
    key_tokens: list[str]

    @property
    def title(self) -> str:
        return KINDS[self.kind][1]

    @property
    def stem(self) -> str:
        return KINDS[self.kind][0]


def stack_layers(weights: list[Tensor], example: int, T_q: int | None = None, T_k: int | None = None) -> Tensor:
    """Per-layer (B, H, T_q, T_k) (or (B, T_q, T_k): one head) -> (L, H, T_q', T_k') of one example, cut to
    the first T_q queries and T_k keys (the real tokens of a padded batch)."""
    out = []
    for w in weights:
        w = w[example]
        w = w.unsqueeze(0) if w.dim() == 2 else w  # (H, T_q, T_k)
        out.append(w[:, :T_q, :T_k].detach().float().cpu())
    return torch.stack(out)  # (L, H, T_q, T_k)


def transformer_maps(weights: dict, example: int, src_tokens: list[str], tgt_tokens: list[str]) -> list[AttentionMap]:
    """Maps of an encoder-decoder: ``seqlab.nn.Transformer``'s ``{"encoder", "decoder": [(self, cross)]}`` or
    a seq2seq model's ``{"encoder", "self", "cross"}`` (``cross`` alone for an RNN with attention)."""
    S, T = len(src_tokens), len(tgt_tokens)
    if "decoder" in weights:
        weights = {
            "encoder": weights["encoder"],
            "self": [w[0] for w in weights["decoder"]],
            "cross": [w[1] for w in weights["decoder"]],
        }
    cross = weights["cross"]
    if isinstance(cross, Tensor):  # an RNN's single alignment (B, T, S)
        cross = [cross]
    maps = []
    if weights.get("encoder"):
        maps.append(AttentionMap("encoder", stack_layers(weights["encoder"], example, S, S), src_tokens, src_tokens))
    if weights.get("self"):
        maps.append(AttentionMap("decoder_self", stack_layers(weights["self"], example, T, T), tgt_tokens, tgt_tokens))
    maps.append(AttentionMap("cross", stack_layers(cross, example, T, S), tgt_tokens, src_tokens))
    return maps


@torch.no_grad()
def causal_maps(model: nn.Module, prompt: Tensor, tokens: list[str]) -> AttentionMap:
    """The causal self-attention of a decoder (the decoding contract) on prompt (1, T): query t's row is
    ``decode_step``'s weights after feeding tokens 0..t, so the map is exactly what the model computes
    while it generates. ValueError if the model returns no self-attention (an RNN language model)."""
    T = prompt.shape[1]
    with eval_mode(model):
        state, _ = model.begin_decoding(prompt=prompt[:, :1], max_new_tokens=T)
        rows = []
        for t in range(T):
            _, state, w = model.decode_step(state, prompt[:, t], need_weights=True)
            if not w or not w.get("self"):
                raise ValueError(f"{type(model).__name__} returns no self-attention weights: it has no attention")
            rows.append(torch.stack([layer_w[0] for layer_w in w["self"]]))  # (L, H, t + 1)
    L, H = rows[0].shape[:2]
    out = torch.zeros(L, H, T, T)
    for t, r in enumerate(rows):
        out[:, :, t, : r.shape[-1]] = r.float().cpu()
    return AttentionMap("causal", out, tokens, tokens)


def vit_tokens(grid: tuple[int, int]) -> list[str]:
    """'CLS' then each patch as (row, column) of the patch grid, row-major (the ViT's order)."""
    return ["CLS"] + [f"({r},{c})" for r in range(grid[0]) for c in range(grid[1])]


def head_entropy(amap: AttentionMap) -> Tensor:
    """(L, H): each head's attention entropy -sum_k p_k ln p_k in nats, averaged over its query rows.
    0: every query looks at one key; ln T_k: uniform over all keys."""
    p = amap.weights.clamp_min(0)
    ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # (L, H, T_q)
    return ent.mean(-1)


def attention_rollout(weights: list[Tensor], residual: float = 0.5) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each output token draws on each input token
    through all layers, residual connections included.

        A~_l = residual * I + (1 - residual) * mean_heads(A_l),  rows renormalised to sum 1
        R = A~_L A~_{L-1} ... A~_1

    weights: per layer (B, H, N, N), first layer first -> R (B, N, N).
    """
    R = None
    for w in weights:
        a = w.float().mean(1)  # (B, N, N): heads averaged
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = residual * eye + (1 - residual) * a
        a = a / a.sum(-1, keepdim=True)
        R = a if R is None else a @ R  # (B, N, N)
    return R


# -- figures ----------------------------------------------------------------------------------------

MAX_TICKS = 40  # more tokens than this: every other label (or fewer) so that they stay readable


def attention_figsize(layers: int, heads: int, tokens: int) -> tuple[float, float]:
    """(width, height) in inches of a layers x heads grid of maps over ``tokens`` tokens (100 dpi): panels
    grow with the tokens so that their labels stay legible, the figure stops at 24 inches."""
    panel = max(2.6, 0.1 * tokens + 0.6)
    return (min(max(panel * heads + 1.6, 8.0), 24.0), min(panel * layers + 1.2, 24.0))


def _ticks(ax, q_tokens, k_tokens, fontsize):
    step_q = max(1, math.ceil(len(q_tokens) / MAX_TICKS))
    step_k = max(1, math.ceil(len(k_tokens) / MAX_TICKS))
    short = all(len(t) <= 2 for t in k_tokens)  # characters read best upright
    ax.set_xticks(range(0, len(k_tokens), step_k), k_tokens[::step_k], rotation=0 if short else 90, fontsize=fontsize)
    ax.set_yticks(range(0, len(q_tokens), step_q), q_tokens[::step_q], fontsize=fontsize)


def plot_attention_maps(amap: AttentionMap, out_path: str | Path, subtitle: str = "") -> Path:
    """A grid, one row per layer and one column per head, of the example's attention weights with the
    query tokens down the side and the key tokens along the bottom."""
    from .curves import plt, save_figure

    L, H = amap.weights.shape[:2]
    n = max(len(amap.query_tokens), len(amap.key_tokens))
    fig, axes = plt.subplots(L, H, figsize=attention_figsize(L, H, n), squeeze=False)
    fontsize = 7 if n <= 24 else 6
    top = float(amap.weights.max()) or 1.0  # one colour scale for the grid, up to its largest weight
    for layer in range(L):
        for head in range(H):
            ax = axes[layer][head]
            im = ax.imshow(amap.weights[layer, head].numpy(), cmap="Blues", vmin=0.0, vmax=top, interpolation="nearest")
            _ticks(ax, amap.query_tokens, amap.key_tokens, fontsize)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
            if head == 0:
                ax.set_ylabel("query token (attends from)", fontsize=7)
            if layer == L - 1:
                ax.set_xlabel("key token (attended to)", fontsize=7)
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02, label="attention weight (probability)")
    fig.suptitle(f"{amap.title[0].upper()}{amap.title[1:]}" + (f": {subtitle}" if subtitle else ""), fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.88, bottom=0.1, top=0.9, wspace=0.3, hspace=0.35)
    return save_figure(fig, out_path, tight=False)  # tight_layout cannot place the shared colorbar


def plot_head_entropy(maps: list[AttentionMap], out_path: str | Path, subtitle: str = "") -> Path:
    """One panel per kind of attention: each head's mean entropy (nats), layers down, heads across."""
    from .curves import plt, save_figure

    fig, axes = plt.subplots(1, len(maps), figsize=ENTROPY_FIGSIZE, squeeze=False)
    for ax, amap in zip(axes[0], maps):
        ent = head_entropy(amap)  # (L, H)
        top = math.log(len(amap.key_tokens))
        im = ax.imshow(ent.numpy(), cmap="magma", vmin=0.0, vmax=max(top, 1e-6), aspect="auto")
        for (i, j), v in _cells(ent):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 * top else "black")
        ax.set_xticks(range(ent.shape[1]), [str(h + 1) for h in range(ent.shape[1])])
        ax.set_yticks(range(ent.shape[0]), [str(la + 1) for la in range(ent.shape[0])])
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"{amap.title}\n(max ln {len(amap.key_tokens)} = {top:.2f} nats: uniform)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="mean entropy over queries (nats)")
    fig.suptitle("Attention entropy per head" + (f": {subtitle}" if subtitle else ""), fontsize=11)
    return save_figure(fig, out_path)


ENTROPY_FIGSIZE = (13, 4.2)
ROLLOUT_FIGSIZE = (16, 4.2)


def _cells(t: Tensor):
    for i in range(t.shape[0]):
        for j in range(t.shape[1]):
            yield (i, j), float(t[i, j])


def plot_rollout(
    image: Tensor,
    weights: list[Tensor],
    grid: tuple[int, int],
    out_path: str | Path,
    example: int = 0,
    pool: str = "cls",
    label: int | None = None,
    subtitle: str = "",
) -> Path:
    """The input image, the last layer's attention of the class token (heads averaged), the rollout of the
    class token over the patches (``pool='mean'``: of all tokens, averaged), and the rollout over the image."""
    from .curves import plt, save_figure

    R = attention_rollout(weights)[example]  # (N + 1, N + 1)
    last = weights[-1][example].float().mean(0)  # (N + 1, N + 1)
    row = R[0] if pool == "cls" else R.mean(0)
    roll = row[1:].reshape(grid).cpu().numpy()  # (h, w) patches
    raw = (last[0] if pool == "cls" else last.mean(0))[1:].reshape(grid).cpu().numpy()
    img = image.float().cpu()
    img = (img if img.dim() == 2 else img.permute(1, 2, 0).squeeze(-1)).numpy()  # (H, W) or (H, W, C)
    fig, axes = plt.subplots(1, 4, figsize=ROLLOUT_FIGSIZE)
    axes[0].imshow(img, cmap="gray_r")
    axes[0].set_title(f"input image (example {example if label is None else label})", fontsize=10)
    for ax, data, title in (
        (axes[1], raw, "last layer: class token's attention\n(heads averaged)"),
        (axes[2], roll, "attention rollout over all layers\n(class token -> patches)"),
    ):
        im = ax.imshow(data, cmap="inferno", interpolation="nearest")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="share of attention (probability)")
    axes[3].imshow(img, cmap="gray_r")
    H, W = img.shape[:2]
    axes[3].imshow(roll, cmap="inferno", alpha=0.55, extent=(-0.5, W - 0.5, H - 0.5, -0.5), interpolation="bilinear")
    axes[3].set_title("rollout over the image", fontsize=10)
    for ax in axes[:1].tolist() + axes[3:].tolist():
        ax.set_xlabel("pixel column")
        ax.set_ylabel("pixel row")
    for ax in axes[1:3]:
        ax.set_xticks(range(grid[1]))
        ax.set_yticks(range(grid[0]))
        ax.set_xlabel("patch column")
        ax.set_ylabel("patch row")
    fig.suptitle("ViT attention rollout (Abnar & Zuidema 2020)" + (f": {subtitle}" if subtitle else ""), fontsize=11)
    return save_figure(fig, out_path)

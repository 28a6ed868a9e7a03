"""Positional encodings as pictures: the table (position x dimension) and what a dot product of two
positions' encodings says about their distance.

Sinusoidal: PE[m] . PE[n] = sum_i cos((m - n) w_i), a function of m - n only, largest at 0 and
falling off (not monotonically) with |m - n|: so attention can read relative distance from it.
A learned table (ViT, GPT, a seq2seq model with ``positions = "learned"``) shows what training made
of it. Rotary encodings have no table: q_m . k_n of rotated vectors depends on m - n only, drawn
for a constant query and key.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

import seqlab.nn as snn

FIGSIZE = (14, 4.6)  # inches at 100 dpi


def positional_tables(model: nn.Module) -> list[tuple[str, str, Tensor | None, int]]:
    """(module name, "sinusoidal" | "learned" | "rotary", table (max_len, d) or None, width) of every
    positional encoding in ``model``; a module shared by two places is listed once."""
    out, seen = [], set()
    for name, m in model.named_modules():
        if id(m) in seen:
            continue
        seen.add(id(m))
        if isinstance(m, snn.SinusoidalPositionalEncoding):
            out.append((name, "sinusoidal", m.pe.detach().float().cpu(), m.d_model))
        elif isinstance(m, snn.LearnedPositionalEncoding):
            out.append((name, "learned", m.weight.detach().float().cpu(), m.d_model))
        elif isinstance(m, snn.RotaryEmbedding) and not any(kind == "rotary" for _, kind, _, _ in out):
            out.append((name, "rotary", None, m.head_dim))
    return out


def dot_by_distance(table: Tensor, references: list[int]) -> dict[int, tuple[list[int], list[float]]]:
    """For each reference position m: (n - m for every n, PE[m] . PE[n])."""
    out = {}
    for m in references:
        dots = (table @ table[m]).tolist()  # (max_len,)
        out[m] = ([n - m for n in range(len(table))], dots)
    return out


def rotary_dot_by_distance(head_dim: int, length: int) -> tuple[list[int], list[float]]:
    """q_m . k_n for q = k = ones(head_dim) rotated at positions m = length // 2 and every n: a function of n - m."""
    ones = torch.ones(1, length, head_dim)
    rotated = snn.positional.apply_rotary(ones, torch.arange(length))[0]  # (length, head_dim)
    m = length // 2
    return [n - m for n in range(length)], (rotated @ rotated[m]).tolist()


def plot_positional(
    name: str,
    kind: str,
    table: Tensor | None,
    width: int,
    out_path: str | Path,
    length: int | None = None,
    subtitle: str = "",
) -> Path:
    """Heatmap of the table (positions x dimensions) and the dot product against the distance."""
    from .curves import plt, save_figure

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=FIGSIZE, gridspec_kw={"width_ratios": [3, 2]})
    where = f"{name} " if name else ""
    if table is not None:
        table = table[:length] if length else table
        lim = float(table.abs().max()) or 1.0
        im = ax1.imshow(table.numpy(), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax1.set_xlabel("encoding dimension i")
        ax1.set_ylabel("position (token index)")
        ax1.set_title(f"{kind} positional encoding {where}({len(table)} positions x {width} dims)", fontsize=10)
        fig.colorbar(im, ax=ax1, fraction=0.046, pad=0.02, label="PE[pos, i] (unitless)")
        P = len(table)
        refs = sorted({0, P // 4, P // 2, P - 1})
        for m, (dist, dots) in dot_by_distance(table, refs).items():
            ax2.plot(dist, dots, lw=1.2, label=f"m = {m}")
        ax2.set_title("dot product PE[m] . PE[n] against the distance n - m", fontsize=10)
        ax2.legend(fontsize=8, title="reference position")
    else:
        length = length or 64
        angles = torch.arange(length)[:, None] * (10000.0 ** (-torch.arange(0, width, 2) / width))[None]
        im = ax1.imshow(
            torch.cos(angles).numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest"
        )
        ax1.set_xlabel("feature pair i (rotated by the angle pos * theta_i)")
        ax1.set_ylabel("position (token index)")
        ax1.set_title(f"rotary encoding {where}: cos(pos * theta_i), head_dim {width}", fontsize=10)
        fig.colorbar(im, ax=ax1, fraction=0.046, pad=0.02, label="cos of the rotation angle (unitless)")
        dist, dots = rotary_dot_by_distance(width, length)
        ax2.plot(dist, dots, lw=1.4)
        ax2.set_title("q_m . k_n of rotated ones-vectors against n - m", fontsize=10)
    ax2.axvline(0, color="0.4", lw=0.8, ls=":")
    ax2.set_xlabel("distance n - m (positions)")
    ax2.set_ylabel("dot product (unitless)")
    ax2.grid(alpha=0.3)
    fig.suptitle("Positional encoding" + (f": {subtitle}" if subtitle else ""), fontsize=11)
    return save_figure(fig, out_path)

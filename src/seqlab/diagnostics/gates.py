"""Gate activations of LSTM and GRU layers over time, as the layers record them (``return_gates=True``).

A forward pre-hook catches what the model feeds its first recurrent layer; the layer is then
called again on the same input with ``return_gates=True`` (seqlab.nn's recording, computed by the
step functions' named results), so no model needs a method of its own for it.

Saturation: a sigmoid gate is saturated below 0.05 or above 0.95 (it passes ~nothing or
~everything, and its derivative is < 0.05); the tanh candidate, in [-1, 1], when |g| > 0.95.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..utils import eval_mode
from .gradflow import cell_name, recurrent_layers

TANH_GATES = ("candidate",)
NOT_GATES = ("cell",)  # recorded beside the gates (the LSTM's C_t), not a gate itself


@dataclass
class GateRecord:
    """One recurrent layer's gates on a batch: ``gates[name]`` (B, T, H) for the top layer, forward direction;
    ``hidden`` (B, T, H) its H_t (the layer's output), ``cell`` its C_t (LSTMs) or None."""

    layer_name: str
    cell_type: str
    layer_key: str  # "l0", "l1", ... : which of the layer's stacked layers
    gates: dict[str, Tensor]
    hidden: Tensor
    cell: Tensor | None


@torch.no_grad()
def record_gates(model: nn.Module, x: Tensor, y: Tensor | None = None) -> GateRecord:
    """Run ``model`` on x (and y: a seq2seq model needs its target) in eval mode and record the gates of its
    first LSTM/GRU layer call. ValueError if it has none or only vanilla RNNs."""
    layers = [(n, m) for n, m in recurrent_layers(model) if cell_name(m) not in ("rnn_tanh", "rnn_relu")]
    if not layers:
        kinds = ", ".join(cell_name(m) for _, m in recurrent_layers(model)) or "none"
        raise ValueError(
            f"no LSTM or GRU layer to record gates from (recurrent layers: {kinds}); a vanilla RNN has no gates"
        )
    name, layer = layers[0]
    seen: list[tuple[tuple, dict]] = []
    handle = layer.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args, kwargs)) or None, with_kwargs=True
    )
    try:
        with eval_mode(model):
            model(x) if y is None else model(x, y)
    finally:
        handle.remove()
    if not seen:
        raise ValueError(f"{type(model).__name__} did not run its layer {name} on this input")
    args, kwargs = seen[0]
    with eval_mode(model):
        output, _, gates = layer(*args, **{**kwargs, "return_gates": True})
    top = f"l{layer.num_layers - 1}"
    H = layer.hidden_size
    out = output if layer.batch_first else output.transpose(0, 1)  # (B, T, D * H_out)
    recorded = gates[top]
    return GateRecord(
        name,
        cell_name(layer),
        top,
        {k: v for k, v in recorded.items() if k not in NOT_GATES},
        out[..., : getattr(layer, "proj_size", 0) or H],
        recorded.get("cell"),
    )


def saturation(record: GateRecord, mask: Tensor | None = None) -> dict[str, float]:
    """Fraction of saturated activations per gate over the batch, steps and units (``mask`` (B, T): valid steps)."""
    out = {}
    for name, g in record.gates.items():
        sat = g.abs() > 0.95 if name in TANH_GATES else (g < 0.05) | (g > 0.95)  # (B, T, H)
        if mask is not None:
            sat = sat[mask]
        out[name] = float(sat.float().mean())
    return out


FIGSIZE = (15, 8)  # inches at 100 dpi: 1500 x 800 pixels


def plot_gates(
    record: GateRecord,
    out_path: str | Path,
    example: int = 0,
    title: str = "",
    mask: Tensor | None = None,
    label: int | None = None,
) -> Path:
    """Heatmaps unit x step of every gate for batch row ``example`` (called example ``label`` in the titles),
    the saturated fraction per gate (whole batch), and the norms of C_t (LSTM) and H_t over the example's steps."""
    label = example if label is None else label
    from .curves import plt, save_figure

    names = list(record.gates)
    ncols = max(len(names), 3)
    fig, axes = plt.subplots(2, ncols, figsize=FIGSIZE, squeeze=False)
    T_valid = int(mask[example].sum()) if mask is not None else record.hidden.shape[1]
    for ax, name in zip(axes[0], names):
        g = record.gates[name][example, :T_valid].T.cpu().numpy()  # (H, T)
        lo = -1.0 if name in TANH_GATES else 0.0
        im = ax.imshow(
            g, aspect="auto", cmap="RdBu_r" if lo < 0 else "viridis", vmin=lo, vmax=1.0, interpolation="nearest"
        )
        fn = "tanh" if name in TANH_GATES else "sigmoid"
        ax.set_title(f"{name} ({fn}) activation", fontsize=10)
        ax.set_xlabel("time step t")
        ax.set_ylabel("unit (hidden dimension index)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="activation (unitless)")
    for ax in axes[0][len(names) :]:
        ax.axis("off")
    sat = saturation(record, mask)
    ax = axes[1][0]
    ax.bar(list(sat), [100 * v for v in sat.values()], color="tab:orange")
    ax.set_ylim(0, 100)
    ax.set_ylabel("saturated activations (%)")
    ax.set_xlabel("gate")
    ax.set_title(
        f"Saturated fraction over {record.hidden.shape[0]} examples\n(sigmoid < 0.05 or > 0.95; tanh |g| > 0.95)",
        fontsize=9,
    )
    ax.tick_params(axis="x", labelsize=8)
    for i, v in enumerate(sat.values()):
        ax.text(i, 100 * v + 2, f"{100 * v:.1f}%", ha="center", fontsize=8)
    ax = axes[1][1]
    steps = range(T_valid)
    if record.cell is not None:
        c_norm = record.cell[example, :T_valid].norm(dim=-1)  # (T,)
        ax.plot(steps, c_norm.cpu().numpy(), "o-", ms=3, label="||C_t|| (cell state)")
    h_norm = record.hidden[example, :T_valid].norm(dim=-1)  # (T,)
    ax.plot(steps, h_norm.cpu().numpy(), "s-", ms=3, label="||H_t|| (hidden state)")
    ax.set_xlabel("time step t")
    ax.set_ylabel("L2 norm over units (unitless)")
    ax.set_title(
        ("Cell-state and hidden-state" if record.cell is not None else "Hidden-state") + " norm over time", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1][2]
    means = {n: float(g[example, :T_valid].mean()) for n, g in record.gates.items()}
    ax.bar(list(means), list(means.values()), color="tab:blue")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_ylabel("mean activation over units and steps (unitless)")
    ax.set_xlabel("gate")
    ax.set_title(f"Mean gate activation, example {label}", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    for ax in axes[1][3:]:
        ax.axis("off")
    fig.suptitle(
        f"{record.cell_type.upper()} gates over time: layer {record.layer_name}.{record.layer_key}, "
        f"example {label}" + (f" ({title})" if title else ""),
        fontsize=12,
    )
    return save_figure(fig, out_path)

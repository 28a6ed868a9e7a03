"""Training curves from one or several runs' ``metrics.jsonl``: loss, the task metric, gradient norm.

Every figure module of seqlab.diagnostics saves through :func:`save_figure` (atomic, 100 dpi, so a
figure of ``figsize`` (w, h) inches is a PNG of exactly 100 w x 100 h pixels).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from ..utils import atomic_write  # noqa: E402

DPI = 100
FIGSIZE_PER_PANEL = (4.6, 3.8)  # inches; a curves figure is panels x this
UNITS = {
    "loss": "nats per target (cross-entropy) or MSE",
    "accuracy": "fraction correct",
    "grad_norm": "global L2 norm before clipping",
    "lr": "learning rate",
}


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl``; a half-written last line (a killed run) or any line that is
    not a JSON object with a step is skipped."""
    out = []
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "step" in record:
                    out.append(record)
    return out


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of every record that has ``key``."""
    pts = [(r["step"], r[key]) for r in records if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def curve_panels(records_by_run: dict[str, list[dict]], metrics: tuple[str, ...]) -> list[str]:
    """The metrics among ``metrics`` (and the gradient norm) that some run logged."""
    present = [
        m
        for m in metrics
        if any(f"train/{m}" in r or f"val/{m}" in r for records in records_by_run.values() for r in records)
    ]
    if any("train/grad_norm" in r for records in records_by_run.values() for r in records):
        present.append("grad_norm")
    return present or ["loss"]


def curves_figsize(panels: int) -> tuple[float, float]:
    return (FIGSIZE_PER_PANEL[0] * panels, FIGSIZE_PER_PANEL[1])


def plot_curves(
    metrics_path: str | Path, out_path: str | Path, metrics: tuple[str, ...] = ("loss", "accuracy"), title: str = ""
) -> Path:
    """One panel per metric, train and validation over optimiser steps, and the gradient norm (log
    scale); returns the PNG's path."""
    return plot_runs_curves({title or Path(metrics_path).parent.name: read_metrics(metrics_path)}, out_path, metrics)


def plot_runs_curves(
    records_by_run: dict[str, list[dict]], out_path: str | Path, metrics: tuple[str, ...] = ("loss", "accuracy")
) -> Path:
    """Curves of several runs on the same axes (one colour per run; train solid, validation dots)."""
    panels = curve_panels(records_by_run, metrics)
    fig, axes = plt.subplots(1, len(panels), figsize=curves_figsize(len(panels)), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    several = len(records_by_run) > 1
    for ax, metric in zip(axes[0], panels):
        for i, (run, records) in enumerate(records_by_run.items()):
            prefix = f"{run}: " if several else ""
            color = colors[i % len(colors)]
            if metric == "grad_norm":
                steps, values = series(records, "train/grad_norm")
                if steps:  # one logged step is a marker: a line through one point draws nothing
                    style = "o" if len(steps) == 1 else "-"
                    ax.semilogy(steps, values, style, color=color, lw=1.0, markersize=3, label=f"{prefix}train")
                continue
            for split, style in (("train", "-"), ("val", "o-")):
                steps, values = series(records, f"{split}/{metric}")
                if steps:
                    ax.plot(
                        steps,
                        values,
                        "o" if len(steps) == 1 else style,
                        color=color,
                        alpha=1.0 if split == "val" or not several else 0.6,
                        label=f"{prefix}{split}",
                        markersize=3,
                        lw=1.2,
                    )
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(f"{metric.replace('_', ' ')} ({UNITS.get(metric, 'as logged')})", fontsize=8)
        what = "gradient norm" if metric == "grad_norm" else metric
        ax.set_title(f"{what}" + (" (log scale)" if metric == "grad_norm" else ""), fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    names = ", ".join(records_by_run)
    fig.suptitle(
        f"Training curves: {names}" if len(names) < 120 else f"Training curves of {len(records_by_run)} runs",
        fontsize=11,
    )
    return save_figure(fig, out_path)


def mean_validation_records(metrics_paths: list[str | Path]) -> list[dict]:
    """The ``val/`` values of several runs' ``metrics.jsonl`` averaged at each step that every run
    validated at (seeds of one model: one curve); the train values are left out."""
    per_run = [
        {
            r["step"]: {k: v for k, v in r.items() if k.startswith("val/")}
            for r in read_metrics(p)
            if any(k.startswith("val/") for k in r)
        }
        for p in metrics_paths
    ]
    steps = sorted(set.intersection(*(set(run) for run in per_run))) if per_run else []
    out = []
    for step in steps:
        keys = set.intersection(*(set(run[step]) for run in per_run))
        out.append({"step": step, **{k: sum(run[step][k] for run in per_run) / len(per_run) for k in sorted(keys)}})
    return out


def plot_validation_curves(
    runs_by_label: dict[str, list[str | Path]], out_path: str | Path, metrics: tuple[str, ...] = ("loss", "accuracy")
) -> Path:
    """One validation curve per label on the same axes, the mean of its runs (run directories)."""
    records = {
        label: mean_validation_records([Path(run) / "metrics.jsonl" for run in runs])
        for label, runs in runs_by_label.items()
    }
    return plot_runs_curves(records, out_path, metrics)


def save_figure(fig, out_path: str | Path, *, tight: bool = True) -> Path:
    """Lay out ``fig`` (``tight``: tight_layout; else as the caller arranged it), write it as a PNG (folders
    made as needed, atomically), free it; returns the path."""
    if tight:
        fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    plt.close(fig)
    return out_path

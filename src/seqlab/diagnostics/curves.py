"""Training curves from a run's ``metrics.jsonl``: loss and the task metric, train and validation."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path: str | Path) -> list[dict]:
    with Path(path).open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of every record that has ``key``."""
    pts = [(r["step"], r[key]) for r in records if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_curves(metrics_path: str | Path, out_path: str | Path, metrics: tuple[str, ...] = ("loss", "accuracy")) -> Path:
    """One panel per metric, train and validation over optimiser steps; returns the PNG's path."""
    records = read_metrics(metrics_path)
    present = [m for m in metrics if any(f"train/{m}" in r or f"val/{m}" in r for r in records)]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(5 * max(len(present), 1), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], present):
        for split, style in (("train", "-"), ("val", "o-")):
            steps, values = series(records, f"{split}/{metric}")
            if steps:
                ax.plot(steps, values, style, label=split, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, out_path)


def save_figure(fig, out_path: str | Path) -> Path:
    """Lay out ``fig``, write it as a PNG (folders made as needed), free it; returns the path."""
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path

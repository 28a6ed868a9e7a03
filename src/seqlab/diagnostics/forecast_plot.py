"""The forecasting figure: one panel per horizon, history, truth, each model's forecast and the band."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..experiments.forecast import NAIVE, ForecastResult  # noqa: E402
from .curves import save_figure  # noqa: E402


def time_axis(labels: list) -> list:
    """Time labels as numbers (years, steps) or dates (ISO strings); positions if neither."""
    try:
        return [float(t) for t in labels]
    except (TypeError, ValueError):
        pass
    try:
        return [dt.date.fromisoformat(str(t)) for t in labels]
    except ValueError:
        return list(range(len(labels)))


def plot_forecast(result: ForecastResult, out_path: str | Path, history: int | None = None) -> Path:
    """Panels for each horizon h: the series before the test part (``history`` values, default twice
    the test length), the test truth, every model's h-step forecasts and the interval band."""
    horizons = result.info["horizons"]
    t = time_axis(result.time)
    targets = result.targets
    first = int(targets[0])
    history = 2 * len(targets) if history is None else history
    past = np.arange(max(first - history, 0), first + 1)
    test_t = [t[i] for i in targets]
    fig, axes = plt.subplots(len(horizons), 1, figsize=(11, 3.2 * len(horizons)), squeeze=False, sharex=True)
    # tab10 without its grey, which is the history's colour.
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]
    models = [m for m in result.predictions if m != NAIVE]
    color = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    units = result.info.get("units", "")
    for ax, h in zip(axes[:, 0], horizons):
        ax.plot([t[i] for i in past], result.series[past], color="0.55", lw=1.2, label="history")
        ax.plot(test_t, result.series[targets], color="black", lw=1.8, label="truth")
        if h in result.band:
            lo, hi = result.band[h]
            pct = round(100 * result.info["interval"])
            ax.fill_between(
                test_t,
                lo,
                hi,
                color=color.get(result.info["interval_model"], "tab:blue"),
                alpha=0.15,
                lw=0,
                label=f"{result.info['interval_model']} {pct}% interval",
            )
        for name, preds in result.predictions.items():
            style = {"ls": ":", "color": "0.3"} if name == NAIVE else {"ls": "-", "color": color[name]}
            ax.plot(test_t, preds[h], lw=1.0, label=name, **style)
        ax.axvline(t[first], color="0.3", lw=0.8, ls="--")
        ax.set_title(
            f"{result.info['data']}: {h}-step-ahead forecasts over the test part (iterated from t - {h})", fontsize=10
        )
        ax.set_ylabel(units or "value")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=3)
    return save_figure(fig, out_path)

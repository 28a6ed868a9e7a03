"""Forecasting benchmark: every model on the same series, split, windows and budget.

``run_forecast`` builds the series dataset once with AR(tau) windows (tau = ``order``, one step
ahead) and a chronological train/val/test split, then

- ``naive``: the last observed value, x_hat_{t+h} = x_t (always reported: the floor to beat);
- ``ar``: ``ARModel`` fit in closed form on the training part;
- ``mlp_ar``, ``rnn``, ``lstm``, ``gru``, ``transformer`` (and ``lstm_mdn``, an LSTM with a mixture
  density head, whose predictive distribution gives the interval): each trained by the same
  ``Trainer`` for ``budget_steps`` optimiser steps of ``batch_size`` windows, keeping the weights
  of the best validation loss (the final weights when there is no validation part,
  ``data.val_fraction = 0``).

Every model predicts one step ahead; an h-step forecast is iterated: the prediction of x_{t+1}
is appended to the window and fed back to predict x_{t+2}, and so on (no model ever sees a true
value after the forecast origin t). For each horizon h the metrics are over the same targets,
every value of the test part, each forecast from the origin h steps before it, in the series'
original units (the scaler fitted on the training part is inverted).

The interval model's band comes from Monte Carlo paths: at each step a value is drawn from its
mixture and fed back, and the band is the (1 - level) / 2 and (1 + level) / 2 quantiles of the
drawn paths at each horizon.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ConfigError, from_dict
from ..data import DATASETS, SeriesTooShort, TensorSequenceDataset
from ..models import (
    ARModel,
    MLPAutoregressiveConfig,
    RecurrentForecasterConfig,
    TransformerForecasterConfig,
    build_model,
)
from ..nn.mdn import mixture_sample
from ..task import Task
from ..train.config import TrainConfig
from ..train.distributed import resolve_device
from ..train.stops import TrainingInterrupted
from ..train.trainer import Trainer
from ..utils import atomic_write_text, count_parameters, set_seed

NAIVE = "naive"
INTERVAL_MODEL = "lstm_mdn"


def model_config(name: str, order: int):
    """The engine-trained forecasters by their ``seqlab forecast`` names (small, for small series)."""
    configs = {
        "mlp_ar": MLPAutoregressiveConfig(tau=order, hidden_size=64, num_layers=2),
        "rnn": RecurrentForecasterConfig(cell="rnn", hidden_size=32),
        "lstm": RecurrentForecasterConfig(cell="lstm", hidden_size=32),
        "gru": RecurrentForecasterConfig(cell="gru", hidden_size=32),
        "transformer": TransformerForecasterConfig(tau=order, d_model=32, num_heads=4, d_ff=64, num_layers=2),
        "lstm_mdn": RecurrentForecasterConfig(cell="lstm", hidden_size=32, num_components=3),
    }
    return configs[name]


FORECAST_MODELS = ("ar", "mlp_ar", "rnn", "lstm", "gru", "transformer", "lstm_mdn")
SERIES_DATASETS = ("sunspots", "co2", "sine", "series_csv")
INPUTS = ("relative", "level")


@dataclass(frozen=True)
class ForecastSettings:
    data: str = "sunspots"
    models: tuple[str, ...] = ("ar", "mlp_ar", "rnn", "lstm", "gru", "transformer")
    order: int = 9  # tau: every model sees the last `order` values
    horizons: tuple[int, ...] = (1, 5, 10)
    budget_steps: int = 1500  # optimiser steps for each trained model
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    interval_model: str = INTERVAL_MODEL  # also fitted, for the band; "" for none
    interval: float = 0.8  # central probability of the band
    samples: int = 200  # Monte Carlo paths per forecast origin for the band
    device: str = "cpu"  # the models are tiny: launch overhead would dominate on a GPU
    inputs: str = "relative"  # networks see the window minus its last value ("relative") or raw ("level")
    data_overrides: tuple[tuple[str, Any], ...] = ()  # other [data] keys, e.g. (("path", "x.csv"),)

    def __post_init__(self):
        if self.data not in SERIES_DATASETS:
            raise ConfigError(f"--data must be a series dataset ({', '.join(SERIES_DATASETS)}), got {self.data!r}")
        unknown = [m for m in self.models if m not in FORECAST_MODELS]
        if unknown:
            raise ConfigError(f"unknown model {unknown[0]!r} in --models; valid: {', '.join(FORECAST_MODELS)}")
        if not self.models:
            raise ConfigError("--models is empty; give at least one of " + ", ".join(FORECAST_MODELS))
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"--models lists a model twice: {','.join(self.models)}")
        if self.order < 1:
            raise ConfigError(f"--order must be >= 1, got {self.order}")
        if self.interval_model:
            if self.interval_model not in FORECAST_MODELS:
                raise ConfigError(f"unknown --interval-model {self.interval_model!r}; valid: lstm_mdn, or none")
            if self.interval_model == "ar" or model_config(self.interval_model, self.order).num_components < 1:
                raise ConfigError(
                    f"--interval-model {self.interval_model!r} has no predictive distribution; use lstm_mdn, or none"
                )
        if not self.horizons or min(self.horizons) < 1:
            raise ConfigError(f"--horizons must be integers >= 1, got {','.join(map(str, self.horizons))}")
        if len(set(self.horizons)) < len(self.horizons):
            raise ConfigError(f"--horizons lists a horizon twice: {','.join(map(str, self.horizons))}")
        for key in ("budget_steps", "batch_size", "samples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        if self.inputs not in INPUTS:
            raise ConfigError(f"--inputs must be one of {', '.join(INPUTS)}, got {self.inputs!r}")
        if not 0 < self.interval < 1:
            raise ConfigError(f"--interval must be in (0, 1), got {self.interval}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a number > 0, got {self.lr}")
        keys = dict(self.data_overrides)
        if "tau" in keys or "horizon" in keys:
            raise ConfigError(
                "set the window with --order (tau); forecasts are one step ahead, iterated to each horizon"
            )

    @property
    def fitted(self) -> tuple[str, ...]:
        """The models that are fitted: ``models``, plus the interval model if it is not among them."""
        extra = (self.interval_model,) if self.interval_model and self.interval_model not in self.models else ()
        return (*self.models, *extra)


class ForecastInterrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped ``run_forecast``; ``result`` scores the models finished before it."""

    def __init__(self, result: ForecastResult, during: str, signum: int):
        self.result, self.during, self.signum = result, during, signum
        super().__init__(f"{signal.Signals(signum).name} while fitting {during}")


@dataclass
class ForecastResult:
    metrics: dict[str, dict[int, dict[str, float]]]  # {model: {h: {"rmse", "mae"}}}, naive first
    series: np.ndarray  # (L,) original units
    time: list  # (L,) time labels
    targets: np.ndarray  # (N,) indices into series of the test targets
    split_index: tuple[int, int]  # series indices where val and test begin
    predictions: dict[str, dict[int, np.ndarray]]  # {model: {h: (N,)}} original units
    band: dict[int, tuple[np.ndarray, np.ndarray]]  # {h: (low (N,), high (N,))} of the interval model
    info: dict[str, Any] = field(default_factory=dict)


def _data_config(settings: ForecastSettings):
    values = {**dict(settings.data_overrides), "name": settings.data, "tau": settings.order, "horizon": 1}
    return from_dict(DATASETS[settings.data].config, values, "data")


def iterate(predict_next: Callable[[np.ndarray], np.ndarray], windows: np.ndarray, steps: int) -> np.ndarray:
    """Iterated multi-step forecasts: windows (N, tau), oldest first -> (N, steps), prediction j being
    x_hat_{t+j+1}, computed from the window with the predictions before it appended."""
    w = windows.copy()
    out = np.empty((len(w), steps))
    for j in range(steps):
        out[:, j] = predict_next(w)  # (N,)
        w = np.concatenate([w[:, 1:], out[:, j : j + 1]], axis=1)  # slide: drop the oldest, append x_hat
    return out


def relative_windows(dataset: TensorSequenceDataset) -> TensorSequenceDataset:
    """x - x_{t-1} and y - x_{t-1}: every window seen from its last value (a level shift changes nothing)."""
    x, y = dataset.tensors  # (N, tau, 1), (N, 1)
    last = x[:, -1]  # (N, 1)
    return TensorSequenceDataset(x - last.unsqueeze(1), y - last)


def _torch_predictor(
    model: torch.nn.Module, device: torch.device, relative: bool
) -> Callable[[np.ndarray], np.ndarray]:
    @torch.no_grad()
    def predict(w: np.ndarray) -> np.ndarray:
        last = w[:, -1] if relative else np.zeros(len(w))  # (N,)
        x = torch.as_tensor(w - last[:, None], dtype=torch.float32, device=device)  # (N, tau)
        y_hat, _ = model(x.unsqueeze(-1))  # (N, tau, 1) -> (N, 1)
        return last + y_hat[:, 0].double().cpu().numpy()

    return predict


@torch.no_grad()
def sample_paths(
    model: torch.nn.Module,
    windows: np.ndarray,
    steps: int,
    samples: int,
    seed: int,
    device: torch.device,
    relative: bool = False,
) -> np.ndarray:
    """Monte Carlo futures of a probabilistic forecaster: windows (N, tau) -> (N, samples, steps),
    each step drawn from the predictive mixture and fed back (``relative``: the model sees and
    predicts values minus the window's last one)."""
    N, tau = windows.shape
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.as_tensor(windows, dtype=torch.float32, device=device)
    x = x.repeat_interleave(samples, dim=0).unsqueeze(-1)  # (N * S, tau, 1), S copies of each window
    out = []
    for _ in range(steps):
        last = x[:, -1] if relative else torch.zeros_like(x[:, -1])  # (N * S, 1)
        draw = last + mixture_sample(model.distribution(x - last.unsqueeze(1)), generator=g)  # (N * S, 1)
        out.append(draw)
        x = torch.cat([x[:, 1:], draw.unsqueeze(-1)], dim=1)  # (N * S, tau, 1)
    paths = torch.cat(out, dim=1)  # (N * S, steps)
    return paths.view(N, samples, steps).double().cpu().numpy()


def train_forecaster(
    name: str, settings: ForecastSettings, splits, device: torch.device
) -> tuple[torch.nn.Module, dict]:
    """One engine-trained forecaster: ``budget_steps`` steps, the best validation weights restored.

    Without a validation part (``data.val_fraction = 0``) the final weights are kept, and the fit
    record says so: ``kept`` is "final" and ``best_val_loss`` None (else "best_val").
    """
    set_seed(settings.seed)
    model = build_model(model_config(name, settings.order))
    budget = settings.budget_steps
    every = max(budget // 20, 1)
    cfg = TrainConfig(
        seed=settings.seed,
        batch_size=settings.batch_size,
        lr=settings.lr,
        max_steps=budget,
        eval_every=every,
        log_every=every,
        layer_norms_every=0,
        tensorboard=False,
        schedule="cosine",
        grad_clip=1.0,
        device=settings.device,
    )
    train_set, val_set = splits.train, splits.val
    if settings.inputs == "relative":
        train_set, val_set = relative_windows(train_set), relative_windows(val_set)
    trainer = Trainer(model, cfg, train_set, val_set, task=splits.info["task"], progress=False, device=device)
    best: dict[str, Any] = {"value": None, "state": None, "step": 0}

    def keep_best(t: Trainer) -> None:  # run_dir is None, so no best.pt: keep the weights in memory
        if t.best is not None and t.best != best["value"]:
            best.update(value=t.best, state=copy.deepcopy(t.model.state_dict()), step=t.step)

    trainer.add_callback("on_step_end", keep_best)
    fit = trainer.fit()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    kept = "best_val" if best["state"] is not None else "final"
    return model, {
        "steps": fit["steps"],
        "seconds": fit["seconds"],
        "kept": kept,
        "best_val_loss": best["value"],
        "best_step": best["step"] if kept == "best_val" else fit["steps"],
        "params": count_parameters(model),
    }


def run_forecast(settings: ForecastSettings, log: Callable[[str], None] = lambda text: None) -> ForecastResult:
    """Fit every model of ``settings`` and score its iterated forecasts on the test part (see module doc)."""
    start = time.perf_counter()
    data_cfg = _data_config(settings)
    try:
        splits = DATASETS[settings.data].build(data_cfg)
    except SeriesTooShort as err:  # the window length is --order here, not data.tau
        raise ConfigError(err.explain("--order")) from None
    info = splits.info
    source = info.get("source", settings.data)
    if info.get("task") != Task.REGRESSION:
        raise ConfigError(f"data {settings.data!r} is not a series (task '{info.get('task')}')")
    scaler = info["scaler"]
    series = info["series"].numpy()  # (L,) float64, original units: truth and naive forecasts unrounded
    z = scaler.transform(series)  # (L,) the models' units
    L, tau, H = len(series), settings.order, max(settings.horizons)
    n_train, test_start = info["split_index"]
    if test_start >= L:
        raise ConfigError(f"{source}: the test part of {L:,} values is empty; raise --data.test_fraction")
    if test_start - H - tau + 1 < 0:
        raise ConfigError(
            f"{source}: the largest horizon ({H}) plus --order ({tau}) reaches before the series starts "
            f"for the first test target (index {test_start} of {L:,} values); lower --order or "
            f"--horizons, or use a longer series"
        )
    if "ar" in settings.fitted and n_train < 2 * tau + 1:  # before any model is fitted
        raise ConfigError(
            f"{source}: AR({tau}) needs at least 2 * order + 1 = {2 * tau + 1} training values to fit, and the "
            f"training part holds {n_train:,}; lower --order or --data.val_fraction / --data.test_fraction"
        )
    targets = np.arange(test_start, L)  # (N,) the test part
    # Scores compare forecasts with observed values only: a missing value filled in is no truth to score.
    scored = np.asarray(info.get("observed", np.ones(L, dtype=bool)))[targets]  # (N,) bool
    if not scored.any():
        raise ConfigError(
            f"{source}: every one of the {len(targets):,} test values is missing (filled in), so nothing can be "
            "scored; raise --data.test_fraction or give a series with observed values at its end"
        )
    if not scored.all():
        log(
            f"{source}: {int((~scored).sum()):,} of the {len(targets):,} test values were missing: scored on the "
            f"{int(scored.sum()):,} observed ones"
        )
    origins = np.arange(test_start - H, L - 1)  # every origin some horizon reaches a test target from
    windows = z[origins[:, None] - tau + 1 + np.arange(tau)]  # (M, tau), window ends at the origin

    def at_horizons(paths: np.ndarray) -> dict[int, np.ndarray]:
        """paths (M, H) of one-step-fed-back forecasts -> {h: (N,)}: target t from origin t - h."""
        return {h: paths[targets - h - origins[0], h - 1] for h in settings.horizons}

    device = resolve_device(settings.device)
    relative = settings.inputs == "relative"
    predictions: dict[str, dict[int, np.ndarray]] = {NAIVE: {h: series[targets - h] for h in settings.horizons}}
    fits: dict[str, dict] = {}
    models: dict[str, torch.nn.Module] = {}
    stopped = None  # (what was being fitted, signal) when Ctrl-C or SIGTERM cut the fits short
    try:
        for name in settings.fitted:
            t0 = time.perf_counter()
            if name == "ar":
                ar = ARModel(tau).fit(z[:n_train])  # the training targets' values, as the networks see
                paths = iterate(ar.predict, windows, H)
                fits[name] = {
                    "seconds": time.perf_counter() - t0,
                    "params": tau + 1,
                    "bias": ar.bias,
                    "weights": ar.weights.tolist(),
                }
            else:
                model, fits[name] = train_forecaster(name, settings, splits, device)
                models[name] = model
                paths = iterate(_torch_predictor(model, device, relative), windows, H)
            predictions[name] = {h: scaler.inverse(p) for h, p in at_horizons(paths).items()}
            extra = ""
            if fits[name].get("kept") == "best_val":
                extra = f", best val loss {fits[name]['best_val_loss']:.4f} at step {fits[name]['best_step']}"
            elif fits[name].get("kept") == "final":
                extra = ", no validation part (data.val_fraction = 0): kept the final weights"
            log(f"{name}: {fits[name]['params']:,} parameters, fitted in {time.perf_counter() - t0:.1f} s{extra}")
    except (KeyboardInterrupt, TrainingInterrupted) as stop:  # keep the models finished so far
        stopped = (name, getattr(stop, "signum", signal.SIGINT))
        fits = {k: v for k, v in fits.items() if k in predictions}
    band: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    coverage: dict[int, float] = {}
    if settings.interval_model and stopped is None:
        try:
            paths = sample_paths(
                models[settings.interval_model], windows, H, settings.samples, settings.seed, device, relative
            )
            lo_q, hi_q = (1 - settings.interval) / 2, (1 + settings.interval) / 2
            lo, hi = np.quantile(paths, lo_q, axis=1), np.quantile(paths, hi_q, axis=1)  # (M, H) each
            lo_h, hi_h = at_horizons(lo), at_horizons(hi)
            truth = series[targets]
            for h in settings.horizons:
                band[h] = (scaler.inverse(lo_h[h]), scaler.inverse(hi_h[h]))
                inside = (truth >= band[h][0]) & (truth <= band[h][1])
                coverage[h] = float(np.mean(inside[scored]))
        except KeyboardInterrupt:
            stopped, band, coverage = ("the interval", signal.SIGINT), {}, {}
    truth = series[targets][scored]
    metrics = {
        name: {
            h: {
                "rmse": float(np.sqrt(np.mean((p[scored] - truth) ** 2))),
                "mae": float(np.mean(np.abs(p[scored] - truth))),
            }
            for h, p in preds.items()
        }
        for name, preds in predictions.items()
    }
    n_val = test_start - n_train
    result_info = {
        "data": settings.data,
        "units": info.get("units", ""),
        "order": tau,
        "horizons": list(settings.horizons),
        "split": {"train": n_train, "val": n_val, "test": L - test_start, "length": L},
        "test_targets": int(scored.sum()),  # observed values of the test part, the ones scored
        "test_targets_filled": int((~scored).sum()),  # missing ones, filled in for the inputs, not scored
        "budget_steps": settings.budget_steps,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "seed": settings.seed,
        "inputs": settings.inputs,
        "interval_model": settings.interval_model,
        "interval": settings.interval,
        "interval_coverage": coverage,
        "fits": fits,
        "source": source,
        "missing_values_filled": info.get("filled", 0),
        "messages": list(info.get("messages", [])),
        "seconds": time.perf_counter() - start,
        "settings": {k: v for k, v in asdict(settings).items()},
    }
    result = ForecastResult(
        metrics,
        series,
        list(info.get("time", range(L))),
        targets,
        (n_train, test_start),
        predictions,
        band,
        result_info,
    )
    if stopped is not None:
        result.info["interrupted"] = {
            "signal": signal.Signals(stopped[1]).name,
            "while_fitting": stopped[0],
            "finished": [m for m in predictions if m != NAIVE],
        }
        raise ForecastInterrupted(result, stopped[0], stopped[1])
    return result


def forecast_json(result: ForecastResult) -> str:
    """``{model: {horizon: {"rmse": ..., "mae": ...}}}`` (horizons as JSON keys, i.e. strings)."""
    return json.dumps({m: {str(h): v for h, v in per.items()} for m, per in result.metrics.items()}, indent=2) + "\n"


def write_forecast(result: ForecastResult, out: str | Path) -> dict[str, Path]:
    """DIR/forecast.json (the metrics) and DIR/forecast_info.json (split, budget, fits, timings)."""
    out = Path(out)
    paths = {"json": atomic_write_text(out / "forecast.json", forecast_json(result))}
    info = json.loads(json.dumps(result.info, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    paths["info"] = atomic_write_text(out / "forecast_info.json", json.dumps(info, indent=2) + "\n")
    return paths


def markdown_table(result: ForecastResult) -> str:
    """RMSE and MAE per model (rows) and horizon (columns), original units; the best value per column in bold."""
    horizons = result.info["horizons"]
    cols = [(h, k) for h in horizons for k in ("rmse", "mae")]
    best = {c: min(per[c[0]][c[1]] for per in result.metrics.values()) for c in cols}
    head = "| model | " + " | ".join(f"h={h} {k.upper()}" for h, k in cols) + " |"
    rule = "|---|" + "---:|" * len(cols)
    rows = []
    for name, per in result.metrics.items():
        cells = []
        for h, k in cols:
            v = per[h][k]
            text = f"{v:.4g}" if math.isfinite(v) else str(v)
            cells.append(f"**{text}**" if v == best[(h, k)] else text)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])

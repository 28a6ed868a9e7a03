"""Real and synthetic time series, windowed for AR(tau)-style one-step (or h-step) forecasting.

A series s_0 .. s_{L-1} becomes examples ``x = (s_{t-tau-h+1}, ..., s_{t-h})`` of shape (tau, 1)
and ``y = (s_t,)`` of shape (1,): tau past values predict the value h = ``horizon`` steps after
the last of them. The split is chronological and made on the target's time: the first
``1 - val_fraction - test_fraction`` of the series holds the training targets, then validation,
then test (the first windows of val and test read inputs from the part before, which is no leak:
those values are in the past). The normaliser (standard score or min-max) is fitted on the
training part only and applied to everything; ``info["scaler"].inverse`` maps predictions back
to the series' units for reporting.

Embedded series (statsmodels' datasets, copied into ``embedded/``; see docs/data.md):

- ``sunspots``: yearly sunspot activity, 1700-2008 (309 values);
- ``co2``: weekly Mauna Loa CO2 in ppmv, 1958-03-29 .. 2001-12-29 (2,284 weeks, 59 without a
  value). Missing values are filled by linear interpolation between the nearest observed weeks
  (the nearest value at the ends) and counted in ``info["filled"]``; ``missing="error"`` makes
  them an error naming the line instead. A filled value is an input and a training target, never
  a validation or test target (``info["observed"]``).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..task import Task
from .base import (
    DataError,
    Splits,
    TensorSequenceDataset,
    check_fractions,
    embedded_fingerprint,
    fingerprint,
    read_utf8,
    split_counts,
)

EMBEDDED_SHA256 = {
    "sunspots.csv": "f67889b1d9002cd5227f0e0ef54e35b419cdd85a31279adef6f73fb41e5c0a9b",
    "co2.csv": "16695fa2786e53414e5a6b54767a3fdf5de99cfbc68617f69d1362d92776a92f",
}

MISSING_TOKENS = {"", "nan", "na", "n/a", "null", "none"}


def read_embedded(name: str) -> str:
    raw = resources.files("seqlab.data").joinpath(f"embedded/{name}").read_bytes()
    if hashlib.sha256(raw).hexdigest() != EMBEDDED_SHA256[name]:
        raise RuntimeError(f"seqlab's embedded {name} is corrupt (sha256 mismatch): reinstall seqlab")
    return raw.decode("utf-8")


def embedded_files(name: str, text: str) -> dict:
    """``info["files"]`` of an embedded series (its content was checked against EMBEDDED_SHA256 on reading)."""
    return {"embedded": embedded_fingerprint(name, EMBEDDED_SHA256[name], text)}


@dataclass(frozen=True)
class RawSeries:
    """A series as read: values (NaN where missing), the time labels, and the CSV line of each value."""

    values: np.ndarray  # (L,) float64
    time: list[str]
    lines: list[int]
    where: str


def parse_series_csv(
    text: str, where: str, column: str | None = None, time_column: str | None = None, header: bool = True
) -> RawSeries:
    """One value column of a CSV with a header row. Empty cells and ``nan``/``NA`` are missing (NaN).

    ``column`` defaults to the last column, ``time_column`` to the first. A cell that is not a
    number, or a row with the wrong number of fields, is a DataError naming the line. A first row
    whose value cell is a number is taken for data, not a header, and is a DataError saying how to
    fix it (``column`` named explicitly counts as a header); with ``header=False`` the file has no
    header row and its columns are named 1, 2, ...
    """
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise DataError(f"{where}: empty, expected a CSV with a header row")
    if header:
        names, first = [h.strip() for h in rows[0]], 2
    else:
        names, first = [str(i + 1) for i in range(len(rows[0]))], 1
    col = len(names) - 1 if column is None else _column(names, column, where)
    tcol = 0 if time_column is None else _column(names, time_column, where)
    if header and column is None and _is_number(names[col]):
        raise DataError(
            f"{where}:1: the first row ({','.join(rows[0])!r}) is numbers, not a header naming the "
            f"columns, so its value would be lost; add a header row (e.g. 'time,value') or set "
            f"data.header=false (--data.header=false) for a file without one"
        )
    header = names
    values, time, lines = [], [], []
    for lineno, row in enumerate(rows[first - 1 :], start=first):
        if not row or not "".join(row).strip():
            continue  # a blank line carries no observation (a missing one is an empty cell)
        if len(row) != len(header):
            raise DataError(
                f"{where}:{lineno}: expected {len(header)} fields ({','.join(header)}), "
                f"found {len(row)}: {','.join(row)!r}"
            )
        cell = row[col].strip()
        if cell.lower() in MISSING_TOKENS:
            value = math.nan
        else:
            try:
                value = float(cell)
            except ValueError:
                raise DataError(
                    f"{where}:{lineno}: expected a number in column {header[col]!r}, found {cell!r}"
                ) from None
            if not math.isfinite(value):
                value = math.nan  # inf is no observation either
        values.append(value)
        time.append(row[tcol].strip())
        lines.append(lineno)
    if not values:
        raise DataError(f"{where}: no rows after the header, expected one value per line")
    return RawSeries(np.array(values, dtype=np.float64), time, lines, where)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _column(header: list[str], name: str, where: str) -> int:
    if name not in header:
        raise DataError(f"{where}: no column {name!r}; found columns {', '.join(header)}")
    return header.index(name)


def fill_missing(raw: RawSeries, missing: str) -> tuple[np.ndarray, int]:
    """Values with NaNs linearly interpolated (``missing="interpolate"``) and how many were filled,
    or a DataError naming the first missing line (``missing="error"``)."""
    v = raw.values
    nan = np.isnan(v)
    n = int(nan.sum())
    if n == 0:
        return v.copy(), 0
    if missing == "error":
        first = raw.lines[int(np.argmax(nan))]
        raise DataError(
            f"{raw.where}:{first}: missing or NaN value ({n:,} of {len(v):,} values are missing); "
            f"set data.missing='interpolate' to fill them"
        )
    if n == len(v):
        raise DataError(f"{raw.where}: all {n:,} values are missing")
    idx = np.arange(len(v))
    # np.interp holds the end values constant beyond the first and last observation.
    return np.interp(idx, idx[~nan], v[~nan]), n


@dataclass(frozen=True)
class Scaler:
    """z = (v - shift) / scale, fitted on the training part; ``inverse`` maps back to the series' units."""

    shift: float
    scale: float
    kind: str

    @classmethod
    def fit(cls, train_values: np.ndarray, kind: str) -> Scaler:
        if kind == "standard":
            shift, scale = float(train_values.mean()), float(train_values.std())
        elif kind == "minmax":
            shift, scale = float(train_values.min()), float(train_values.max() - train_values.min())
        elif kind == "none":
            shift, scale = 0.0, 1.0
        else:
            raise ValueError(f"normalize must be 'standard', 'minmax' or 'none', got {kind!r}")
        return cls(shift, scale if scale > 0 else 1.0, kind)

    def transform(self, v):
        return (v - self.shift) / self.scale

    def inverse(self, z):
        return z * self.scale + self.shift


def ar_windows(s: torch.Tensor, tau: int, horizon: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (N, tau, 1) = tau consecutive values, y (N, 1) = the value ``horizon`` steps after them,
    and the time index t (N,) of each target. N = L - tau - horizon + 1."""
    L = len(s)
    t = torch.arange(tau + horizon - 1, L)  # target times
    offsets = (t - horizon - tau + 1)[:, None] + torch.arange(tau)  # (N, tau)
    return s[offsets].unsqueeze(-1), s[t].unsqueeze(-1), t


@dataclass(frozen=True)
class SeriesConfig:
    """Windows of ``tau`` past values predicting the value ``horizon`` steps ahead; chronological split."""

    name: str = "series"
    tau: int = 10
    horizon: int = 1
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    normalize: str = "standard"  # "standard", "minmax" or "none"; fitted on the training part
    missing: str = "interpolate"  # "interpolate" (and count) or "error"

    def __post_init__(self):
        if self.tau < 1 or self.horizon < 1:
            raise ValueError(f"data.tau and data.horizon must be >= 1, got {self.tau} and {self.horizon}")
        if self.normalize not in ("standard", "minmax", "none"):
            raise ValueError(f"data.normalize must be 'standard', 'minmax' or 'none', got {self.normalize!r}")
        if self.missing not in ("interpolate", "error"):
            raise ValueError(f"data.missing must be 'interpolate' or 'error', got {self.missing!r}")
        check_fractions(self.val_fraction, self.test_fraction)


@dataclass(frozen=True)
class SunspotsConfig(SeriesConfig):
    name: str = "sunspots"
    tau: int = 10


@dataclass(frozen=True)
class CO2Config(SeriesConfig):
    name: str = "co2"
    tau: int = 52  # a year of weeks


@dataclass(frozen=True)
class SineConfig(SeriesConfig):
    """s_t = amplitude * sin(frequency * t) + N(0, noise^2), t = 1..length (the d2l example)."""

    name: str = "sine"
    tau: int = 4
    length: int = 1000
    frequency: float = 0.01  # radians per step
    amplitude: float = 1.0
    noise: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class CsvSeriesConfig(SeriesConfig):
    """One column of any CSV file with a header row."""

    name: str = "series_csv"
    path: str = ""
    column: str = ""  # "" = the last column
    time_column: str = ""  # "" = the first column
    header: bool = True  # false: the first row is data; columns are then named 1, 2, ...


class SeriesTooShort(DataError):
    """A series whose training part cannot hold one window; ``explain(option)`` names the option that
    sets the window length where the command calls it something else (``seqlab forecast --order``)."""

    def __init__(self, where: str, length: int, n_train: int, tau: int, horizon: int):
        self.where, self.length, self.n_train, self.tau, self.horizon = where, length, n_train, tau, horizon
        super().__init__(self.explain("--data.tau"))

    def explain(self, option: str) -> str:
        need = self.tau + self.horizon + 1
        return (
            f"{self.where}: a series of {self.length:,} values leaves {self.n_train:,} for training, fewer than "
            f"tau + horizon + 1 = {need} (tau = {self.tau}); use a longer series, lower {option} or lower "
            f"--data.val_fraction / --data.test_fraction"
        )


def window_splits(values: np.ndarray, cfg: SeriesConfig, **extra) -> Splits:
    """Windows, chronological split on target time, scaler fitted on the training part (see module doc)."""
    L = len(values)
    n_train, n_val, _ = split_counts(L, cfg.val_fraction, cfg.test_fraction)
    if n_train < cfg.tau + cfg.horizon + 1:
        raise SeriesTooShort(extra.get("source", cfg.name), L, n_train, cfg.tau, cfg.horizon)
    scaler = Scaler.fit(values[:n_train], cfg.normalize)
    raw = torch.tensor(values, dtype=torch.float64)  # (L,) as read: float32 would round 1e8 to steps of 8
    s = torch.tensor(scaler.transform(values), dtype=torch.float32)  # (L,)
    x, y, t = ar_windows(s, cfg.tau, cfg.horizon)
    # A missing value filled in may be read as an input, and trained towards, but it is no truth to score:
    # the validation and test parts keep only the windows whose target was observed.
    observed = torch.as_tensor(np.asarray(extra.get("observed", np.ones(L, dtype=bool))))[t]  # (N,) bool
    parts = []
    baseline = {}
    for part, (a, b) in zip(("train", "val", "test"), ((0, n_train), (n_train, n_train + n_val), (n_train + n_val, L))):
        keep = (t >= a) & (t < b)
        if part != "train":
            keep &= observed
        parts.append(TensorSequenceDataset(x[keep], y[keep]))
        if keep.any():
            # Persistence: predict the last observed value, in the series' units.
            last = raw[t[keep] - cfg.horizon]
            baseline[f"persistence_mse_{part}"] = float(((raw[t[keep]] - last) ** 2).mean())
    info = {
        "task": Task.REGRESSION,
        "metric": "mse",
        "input_size": 1,
        "output_size": 1,
        "seq_len": cfg.tau,
        "input_shape": (cfg.tau, 1),
        "target_shape": (1,),
        "tau": cfg.tau,
        "horizon": cfg.horizon,
        "series": raw,
        "split_index": (n_train, n_train + n_val),  # part boundaries in the series
        "scaler": scaler,
        "inverse": scaler.inverse,
        "baseline": {
            **baseline,
            "units": "original (inverse-transformed)",
            "strategy": "persistence: predict the last observed value",
        },
        **extra,
    }
    return Splits(*parts, info)


def _filled_info(raw: RawSeries, filled: int, files: dict, values: str = "values") -> dict:
    """What a series' info says of its values: how many were filled, and ``observed``: (L,) bool, False where
    a value was missing and filled (``seqlab forecast`` scores only observed targets)."""
    info = {"filled": filled, "time": raw.time, "source": raw.where, "files": files, "observed": ~np.isnan(raw.values)}
    if filled:
        info["messages"] = [
            f"{raw.where}: filled {filled:,} missing {values} (of {len(raw.values):,}) by linear interpolation"
        ]
    return info


def build_sunspots(cfg: SunspotsConfig = SunspotsConfig()) -> Splits:
    text = read_embedded("sunspots.csv")
    raw = parse_series_csv(text, "embedded:sunspots.csv", "SUNACTIVITY", "YEAR")
    values, filled = fill_missing(raw, cfg.missing)
    return window_splits(
        values, cfg, **_filled_info(raw, filled, embedded_files("sunspots.csv", text)), units="sunspot number"
    )


def load_co2(missing: str = "interpolate") -> tuple[np.ndarray, list[str], int]:
    """Weekly CO2 (ppmv), ISO week dates (Saturdays) and how many weeks were filled.

    Weeks absent from the file (none in statsmodels' copy) are inserted as missing, so every
    step is exactly 7 days.
    """
    raw = _co2_weeks()
    values, filled = fill_missing(raw, missing)
    return values, raw.time, filled


def _co2_weeks() -> RawSeries:
    """The embedded CO2 file on a grid of every week, NaN where a week is missing."""
    raw = parse_series_csv(read_embedded("co2.csv"), "embedded:co2.csv", "co2", "date")  # checked by sha256
    dates = [dt.date(int(d[:4]), int(d[4:6]), int(d[6:8])) for d in raw.time]
    weeks = [(d - dates[0]).days // 7 for d in dates]
    full = np.full(weeks[-1] + 1, np.nan)
    full[weeks] = raw.values
    lines = [0] * len(full)
    for w, line in zip(weeks, raw.lines):
        lines[w] = line
    time = [(dates[0] + dt.timedelta(weeks=w)).isoformat() for w in range(len(full))]
    return RawSeries(full, time, lines, raw.where)


def build_co2(cfg: CO2Config = CO2Config()) -> Splits:
    raw = _co2_weeks()
    values, filled = fill_missing(raw, cfg.missing)
    files = embedded_files("co2.csv", read_embedded("co2.csv"))
    return window_splits(values, cfg, **_filled_info(raw, filled, files, values="weeks"), units="ppmv")


def sine_series(
    length: int, frequency: float = 0.01, amplitude: float = 1.0, noise: float = 0.2, seed: int = 0
) -> np.ndarray:
    t = np.arange(1, length + 1, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return amplitude * np.sin(frequency * t) + rng.normal(0.0, noise, size=length)


def build_sine(cfg: SineConfig = SineConfig()) -> Splits:
    values = sine_series(cfg.length, cfg.frequency, cfg.amplitude, cfg.noise, cfg.seed)
    return window_splits(values, cfg, filled=0, time=list(range(1, cfg.length + 1)), source="generated", files={})


def build_series_csv(cfg: CsvSeriesConfig) -> Splits:
    if not cfg.path:
        raise DataError("data.path is not set: give the CSV file, e.g. --data.path=series.csv")
    text = read_utf8(cfg.path, "CSV file")
    raw = parse_series_csv(text, str(Path(cfg.path)), cfg.column or None, cfg.time_column or None, cfg.header)
    values, filled = fill_missing(raw, cfg.missing)
    return window_splits(values, cfg, **_filled_info(raw, filled, {"data.path": fingerprint(cfg.path)}))

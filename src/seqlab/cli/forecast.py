"""``seqlab forecast``: AR, MLP, RNN, LSTM, GRU and Transformer forecasters fitted on one series, compared."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..config import ConfigError
from .common import command, data_overrides

HELP = "fit AR, MLP, RNN, LSTM, GRU, Transformer forecasters on a series, compare"
DESCRIPTION = """\
Fit each model on the same chronological split with the same budget, score iterated h-step forecasts
on the test part (original units), write OUT/forecast.json, OUT/forecast_info.json and
OUT/forecast.png, print a table."""
EPILOG = "other [data] keys as --data.key=value, e.g. --data.path=series.csv for series_csv"


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "forecast", HELP, DESCRIPTION, EPILOG)
    p.add_argument("--data", default="sunspots", help="sunspots, co2, sine or series_csv (default: sunspots)")
    p.add_argument(
        "--models",
        default="ar,mlp_ar,rnn,lstm,gru,transformer",
        help="comma-separated, from ar, mlp_ar, rnn, lstm, gru, transformer, lstm_mdn "
        "(default: all but lstm_mdn, which is fitted anyway for the interval)",
    )
    p.add_argument("--order", type=int, default=9, help="tau: the window of past values every model sees (default: 9)")
    p.add_argument("--horizons", default="1,5,10", help="comma-separated steps ahead (default: 1,5,10)")
    p.add_argument("--budget-steps", type=int, default=1500, help="optimiser steps per trained model (default: 1500)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval-model", default="lstm_mdn", help="model whose predictive band is drawn, or none")
    p.add_argument("--interval", type=float, default=0.8, help="central probability of the band (default: 0.8)")
    p.add_argument(
        "--inputs",
        default="relative",
        choices=["relative", "level"],
        help="networks see each window minus its last value (default; follows a trend) or the levels",
    )
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda", "mps", "auto"],
        help="default cpu: the models are tiny and a GPU would mostly wait on launches",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (default 0: torch's own choice); results can differ in the last digits",
    )
    p.add_argument("--out", default="forecast", help="output folder (default: forecast)")
    p.add_argument("--quiet", action="store_true", help="no per-model progress lines")
    return p


def int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated integers, e.g. 1,5,10; got {text!r}") from None


def run(args, extra: list[str], argv: list[str]) -> int:
    import torch

    from ..diagnostics.forecast_plot import plot_forecast
    from ..experiments.forecast import (
        ForecastInterrupted,
        ForecastSettings,
        markdown_table,
        run_forecast,
        write_forecast,
    )

    data_values = data_overrides(extra)
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = ForecastSettings(
        data=args.data,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        order=args.order,
        horizons=int_list(args.horizons, "--horizons"),
        budget_steps=args.budget_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        interval_model="" if args.interval_model == "none" else args.interval_model,
        interval=args.interval,
        device=args.device,
        inputs=args.inputs,
        data_overrides=tuple(sorted(data_values.items())),
    )
    log = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    try:  # before any model is fitted: an --out that cannot be written is a usage error
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the output folder --out {args.out}: {err.strerror or err}") from None
    try:
        result = run_forecast(settings, log=log)
    except ForecastInterrupted as stop:  # Ctrl-C: keep what was finished, in one line
        paths = write_forecast(stop.result, args.out)
        done = stop.result.info["interrupted"]["finished"]
        kept = (
            f"wrote naive and the finished models ({', '.join(done)})" if done else "no model had finished: wrote naive"
        )
        print(
            f"seqlab forecast: interrupted by {signal.Signals(stop.signum).name} while fitting {stop.during}; "
            f"{kept} to {paths['json']}",
            file=sys.stderr,
        )
        return 128 + stop.signum
    paths = write_forecast(result, args.out)
    png = plot_forecast(result, Path(args.out) / "forecast.png")
    info = result.info
    split = info["split"]
    print(
        f"{info['data']}: {split['length']} values, train/val/test {split['train']}/{split['val']}/{split['test']}; "
        f"order {info['order']}, {info['budget_steps']} steps of {info['batch_size']} per trained model; "
        f"RMSE and MAE on the test part in {info['units'] or 'the series units'}"
    )
    for message in info["messages"]:  # values the data layer filled in
        print(message)
    print()
    print(markdown_table(result))
    if info["interval_coverage"]:
        cover = ", ".join(f"h={h} {c:.0%}" for h, c in info["interval_coverage"].items())
        print(f"\n{info['interval_model']} {round(100 * info['interval'])}% interval covers the test truth: {cover}")
    print(f"\n{paths['json']}\n{paths['info']}\n{png}  ({info['seconds']:.1f} s in all)")
    return 0

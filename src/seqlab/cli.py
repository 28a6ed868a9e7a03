"""The ``seqlab`` command: parses arguments, loads configs, calls into train/ and diagnostics/.

Exit status: 0 on success, 2 for a usage or config error (one line on stderr, no traceback),
1 for a failure during the work itself. SEQLAB_DEBUG=1 prints the traceback behind the one line.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from .config import ConfigError

EPILOG_TRAIN = """\
overrides: any config key as --section.key=value, e.g.
  seqlab train configs/digits_lstm.toml --train.max_steps=50 --model.hidden_size=64
values are read as TOML (3, 1e-3, true, "text"); bare words are strings.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqlab", description="Sequence models on PyTorch: train, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"seqlab {__import__('seqlab').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a preset config into a new run directory",
                       description="Train CONFIG (a TOML preset) into OUT/<name>-<timestamp>/.",
                       epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="preset TOML file, e.g. configs/digits_lstm.toml "
                   "(optional with --resume: the run's own config is used)")
    p.add_argument("--out", default="runs", help="parent folder of the run directory (default: runs)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue RUN_DIR from its checkpoints/last.pt, exactly where it stopped")
    p.add_argument("--name", default=None, help="run name (default: <data>-<model>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("runs", help="a table of the runs in a folder",
                       description="One line per run directory in DIR: name, task, model, params, steps, best metric, time.")
    p.add_argument("dir", nargs="?", default="runs")

    p = sub.add_parser("eval", help="evaluate a run directory's checkpoint on a split",
                       description="Rebuild the model and data of RUN_DIR and print its metrics as JSON.")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--checkpoint", default="last.pt", help="file in RUN_DIR/checkpoints (default: last.pt)")

    p = sub.add_parser("forecast", help="fit AR, MLP, RNN, LSTM, GRU, Transformer forecasters on a series, compare",
                       description="Fit each model on the same chronological split with the same budget, score "
                                   "iterated h-step forecasts on the test part (original units), write "
                                   "OUT/forecast.json, OUT/forecast_info.json and OUT/forecast.png, print a table.",
                       epilog="other [data] keys as --data.key=value, e.g. --data.path=series.csv for series_csv",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="sunspots", help="sunspots, co2, sine or series_csv (default: sunspots)")
    p.add_argument("--models", default="ar,mlp_ar,rnn,lstm,gru,transformer",
                   help="comma-separated, from ar, mlp_ar, rnn, lstm, gru, transformer, lstm_mdn "
                        "(default: all but lstm_mdn, which is fitted anyway for the interval)")
    p.add_argument("--order", type=int, default=9, help="tau: the window of past values every model sees (default: 9)")
    p.add_argument("--horizons", default="1,5,10", help="comma-separated steps ahead (default: 1,5,10)")
    p.add_argument("--budget-steps", type=int, default=1500, help="optimiser steps per trained model (default: 1500)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval-model", default="lstm_mdn", help="model whose predictive band is drawn, or none")
    p.add_argument("--interval", type=float, default=0.8, help="central probability of the band (default: 0.8)")
    p.add_argument("--inputs", default="relative", choices=["relative", "level"],
                   help="networks see each window minus its last value (default; follows a trend) or the levels")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps", "auto"],
                   help="default cpu: the models are tiny and a GPU would mostly wait on launches")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0: torch's own choice); results can differ in the last digits")
    p.add_argument("--out", default="forecast", help="output folder (default: forecast)")
    p.add_argument("--quiet", action="store_true", help="no per-model progress lines")

    p = sub.add_parser("data", help="list datasets or describe one",
                       description="seqlab data list | seqlab data info NAME [--data.key=value ...]")
    p.add_argument("action", choices=["list", "info"])
    p.add_argument("name", nargs="?", help="dataset name (for info)")

    p = sub.add_parser("bench", help="run a benchmark (recurrent, attention, ...)",
                       description="seqlab bench NAME [args]: runs seqlab.bench.NAME; NAME --help lists its options.",
                       epilog="benchmarks:\n" + "\n".join(f"  {name:<18} {about}" for name, about in _benchmarks()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")
    return parser


def _benchmarks() -> list[tuple[str, str]]:
    """(name, first docstring line) of each module in seqlab.bench, read without importing it (no torch)."""
    import ast
    import pkgutil

    import seqlab.bench as bench_pkg

    out = []
    for m in sorted(pkgutil.iter_modules(bench_pkg.__path__), key=lambda m: m.name):
        source = Path(bench_pkg.__path__[0], f"{m.name}.py")
        doc = ast.get_docstring(ast.parse(source.read_text())) if source.is_file() else None
        out.append((m.name, (doc or "").strip().splitlines()[0] if doc else ""))
    return out


def _overrides(extra: list[str], allowed: tuple[str, ...]) -> list[str]:
    for arg in extra:
        section = arg[2:].split(".", 1)[0] if arg.startswith("--") and "." in arg else None
        if section not in allowed:
            if not allowed:
                raise ConfigError(f"unrecognised argument {arg!r}; this command takes no --section.key=value overrides")
            raise ConfigError(f"unrecognised argument {arg!r}; overrides look like --section.key=value "
                              f"with section in: {', '.join(allowed)}")
    return extra


def cmd_train(args, extra: list[str], argv: list[str]) -> int:
    from .diagnostics.curves import plot_curves
    from .train.config import load_experiment
    from .train.run import train_experiment
    from .train.trainer import NonFiniteLoss, TrainingInterrupted

    overrides = _overrides(extra, ("model", "data", "train"))
    if args.config is None and args.resume is None:
        raise ConfigError("give a CONFIG file to train, or --resume RUN_DIR to continue a run")
    exp = load_experiment(args.config, overrides) if args.config else None
    try:
        run_dir = train_experiment(exp, out=args.out, run_name=args.name, argv=argv, progress=not args.quiet,
                                   resume=args.resume, overrides=overrides)
    except (TrainingInterrupted, NonFiniteLoss) as stop:
        if not stop.is_main:
            # Under torchrun every process stops at the same step; rank 0 says why and gives the exit
            # status. A failing status here could make torchrun end rank 0 before it has said it.
            return 0
        if isinstance(stop, NonFiniteLoss):
            print(f"seqlab train: failed: {stop}", file=sys.stderr)
            return 1
        where = f"checkpoint saved at step {stop.step}: {stop.checkpoint}" if stop.checkpoint else "no checkpoint written"
        run = stop.checkpoint.parent.parent if stop.checkpoint else "RUN_DIR"
        print(f"seqlab train: interrupted by {signal.Signals(stop.signum).name}; {where}\n"
              f"resume with: seqlab train --resume {run}", file=sys.stderr)
        return 128 + stop.signum
    if run_dir is None:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    plot_curves(run_dir / "metrics.jsonl", run_dir / "plots" / "curves.png")
    summary = json.loads((run_dir / "summary.json").read_text())
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()
             if not isinstance(v, (dict, list))}  # data_files (paths and sha256) stay in summary.json
    print(json.dumps(shown))
    print(f"run directory: {run_dir}")
    print("  summary.json, metrics.jsonl, config.toml, checkpoints/last.pt, plots/curves.png, tensorboard/")
    print(f"next: seqlab eval {run_dir}")
    return 0


def cmd_runs(args, extra: list[str], argv: list[str]) -> int:
    from .train.run import runs_table

    _overrides(extra, ())
    print(runs_table(args.dir, warn=lambda text: print(f"seqlab runs: warning: {text}", file=sys.stderr)))
    return 0


def cmd_eval(args, extra: list[str], argv: list[str]) -> int:
    from .config import parse_overrides
    from .train.run import evaluate_run

    location = parse_overrides(_overrides(extra, ("data",))).get("data", {})
    metrics = evaluate_run(args.run_dir, split=args.split, checkpoint=args.checkpoint, data_location=location,
                           notify=lambda text: print(f"seqlab eval: warning: {text}", file=sys.stderr))
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}))  # signatures: text
    return 0


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated integers, e.g. 1,5,10; got {text!r}") from None


def cmd_forecast(args, extra: list[str], argv: list[str]) -> int:
    import torch

    from .config import parse_overrides
    from .diagnostics.forecast_plot import plot_forecast
    from .train.forecast import ForecastInterrupted, ForecastSettings, markdown_table, run_forecast, write_forecast

    data_overrides = parse_overrides(_overrides(extra, ("data",))).get("data", {})
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = ForecastSettings(
        data=args.data, models=tuple(m.strip() for m in args.models.split(",") if m.strip()), order=args.order,
        horizons=_int_list(args.horizons, "--horizons"), budget_steps=args.budget_steps, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, interval_model="" if args.interval_model == "none" else args.interval_model,
        interval=args.interval, device=args.device, inputs=args.inputs, data_overrides=tuple(sorted(data_overrides.items())))
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
        kept = f"wrote naive and the finished models ({', '.join(done)})" if done else "no model had finished: wrote naive"
        print(f"seqlab forecast: interrupted by {signal.Signals(stop.signum).name} while fitting {stop.during}; "
              f"{kept} to {paths['json']}", file=sys.stderr)
        return 128 + stop.signum
    paths = write_forecast(result, args.out)
    png = plot_forecast(result, Path(args.out) / "forecast.png")
    info = result.info
    split = info["split"]
    print(f"{info['data']}: {split['length']} values, train/val/test {split['train']}/{split['val']}/{split['test']}; "
          f"order {info['order']}, {info['budget_steps']} steps of {info['batch_size']} per trained model; "
          f"RMSE and MAE on the test part in {info['units'] or 'the series units'}")
    for message in info["messages"]:  # values the data layer filled in
        print(message)
    print()
    print(markdown_table(result))
    if info["interval_coverage"]:
        cover = ", ".join(f"h={h} {c:.0%}" for h, c in info["interval_coverage"].items())
        print(f"\n{info['interval_model']} {round(100 * info['interval'])}% interval covers the test truth: {cover}")
    print(f"\n{paths['json']}\n{paths['info']}\n{png}  ({info['seconds']:.1f} s in all)")
    return 0


def cmd_data(args, extra: list[str], argv: list[str]) -> int:
    from . import data
    from .config import from_dict, parse_overrides

    if args.action == "list":
        _overrides(extra, ())
        width = max(len(name) for name in data.DATASETS)
        for name, entry in sorted(data.DATASETS.items()):
            print(f"{name:<{width}}  {entry.description}")
        return 0
    if args.name is None:
        raise ConfigError(f"give a dataset name: seqlab data info NAME, one of {', '.join(sorted(data.DATASETS))}")
    if args.name not in data.DATASETS:
        raise ConfigError(f"unknown dataset {args.name!r}; valid names: {', '.join(sorted(data.DATASETS))}")
    values = parse_overrides(_overrides(extra, ("data",))).get("data", {})
    cfg = from_dict(data.DATASETS[args.name].config, {**values, "name": args.name}, "data")
    print(data.describe(cfg))
    return 0


def cmd_bench(args, extra: list[str], argv: list[str]) -> int:
    try:
        module = importlib.import_module(f"seqlab.bench.{args.name}")
    except ModuleNotFoundError:
        import pkgutil

        import seqlab.bench as bench_pkg

        names = sorted(m.name for m in pkgutil.iter_modules(bench_pkg.__path__))
        raise ConfigError(f"unknown benchmark {args.name!r}; available: {', '.join(names) or 'none'}") from None
    return int(module.main([*args.args, *extra]) or 0)


COMMANDS = {"train": cmd_train, "runs": cmd_runs, "eval": cmd_eval, "forecast": cmd_forecast, "data": cmd_data,
            "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    """Run one command line; returns the exit status. Output to a reader that went away is dropped."""
    with _guarded_output():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exit_:  # --help, --version, or argparse's own usage error (status 2)
        return int(exit_.code or 0)
    try:
        return COMMANDS[args.command](args, extra, argv)
    except ConfigError as err:
        _show_traceback()
        print(f"seqlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _show_traceback()
        print(f"seqlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, FloatingPointError, OSError, ValueError) as err:
        _show_traceback()
        print(f"seqlab {args.command}: failed: {err}", file=sys.stderr)
        return 1


def _show_traceback() -> None:
    """SEQLAB_DEBUG=1: print the traceback behind a one-line failure (call inside an except block)."""
    if os.environ.get("SEQLAB_DEBUG", "") not in ("", "0"):
        traceback.print_exc(file=sys.stderr)


class _OutputGuard:
    """sys.stdout or sys.stderr that keeps working after its reader went away.

    A closed pipe (``seqlab train ... | head -2``, a dead ``tee``) or a hung-up terminal makes every
    write fail (EPIPE, EIO); unguarded, the next progress line would end a training run with nothing
    saved. The first such failure points the file descriptor at /dev/null: output is dropped from
    then on and the work goes on (a closed terminal also sends SIGHUP, which stops ``train`` cleanly).
    """

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as err:
            self._drop(err)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            self._drop(err)

    def _drop(self, err: OSError) -> None:
        if err.errno not in (errno.EPIPE, errno.EIO):
            raise err
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            self._stream.flush()  # what was still buffered goes to /dev/null too
        except (OSError, ValueError):  # no file descriptor (an in-memory stream): keep dropping
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _guarded_output():
    """sys.stdout and sys.stderr behind ``_OutputGuard`` for the duration (and flushed through it)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _OutputGuard(saved[0]), _OutputGuard(saved[1])
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

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


GENERATE_EPILOG = """\
examples:
  seqlab generate runs/shakespeare --prompt "ROMEO:" --max-new-tokens 300 --temperature 0.8 --top-k 40
  seqlab generate runs/fra-eng --source "je suis content ." --beam 5 --num-return-sequences 3 --scores
  seqlab generate runs/fra-eng --input sources.txt --output translations.txt --beam 5
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqlab", description="Sequence models on PyTorch: train, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"seqlab {__import__('seqlab').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "train",
        help="train a preset config into a new run directory",
        description="Train CONFIG (a TOML preset) into OUT/<name>-<timestamp>/.",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        nargs="?",
        help="preset TOML file, e.g. configs/digits_lstm.toml (optional with --resume: the run's own config is used)",
    )
    p.add_argument("--out", default="runs", help="parent folder of the run directory (default: runs)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue RUN_DIR from its checkpoints/last.pt, exactly where it stopped",
    )
    p.add_argument("--name", default=None, help="run name (default: <data>-<model>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser(
        "runs",
        help="a table of the runs in a folder",
        description="One line per run directory in DIR: name, task, model, params, steps, best metric, time.",
    )
    p.add_argument("dir", nargs="?", default="runs")

    p = sub.add_parser(
        "eval",
        help="evaluate a run directory's checkpoint on a split",
        description="Rebuild the model and data of RUN_DIR and print its metrics as JSON.",
    )
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--checkpoint", default="last.pt", help="file in RUN_DIR/checkpoints (default: last.pt)")
    p.add_argument(
        "--beam",
        type=int,
        default=1,
        metavar="N",
        help="seq2seq runs: decode with beam search of width N (default 1: greedy)",
    )
    p.add_argument(
        "--length-penalty",
        type=float,
        default=0.6,
        metavar="ALPHA",
        help="beam search ranks log P / ((5 + |Y|) / 6) ** ALPHA (default: 0.6)",
    )

    p = sub.add_parser(
        "generate",
        help="write text with a language-model or seq2seq run",
        description="Continue a prompt (language models: gpt, rnn_lm) or translate a source "
        "(seq2seq_rnn, seq2seq_transformer) with RUN_DIR's model. Greedy with "
        "--temperature 0, sampling above 0, beam search with --beam N.",
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--prompt", help="text for a language model to continue")
    given.add_argument("--source", help="text for a seq2seq model to translate")
    given.add_argument("--input", metavar="FILE", help="one prompt or source per line, decoded in batches")
    p.add_argument(
        "--output",
        metavar="FILE",
        help="write the outputs here, one line per sequence "
        "(tab, newline, backslash written \\t, \\n, \\\\), instead of printing them",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="default: 200 for a language model; a seq2seq model's longest target",
    )
    p.add_argument("--min-new-tokens", type=int, default=0, help="no <eos> before this many tokens (default: 0)")
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="0: greedy; > 0: sample (default: 1.0 for a language model, 0 for seq2seq and beam search)",
    )
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most probable tokens (default 0: off)")
    p.add_argument("--top-p", type=float, default=1.0, help="sample from the smallest set reaching p (default 1: off)")
    p.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min_p * the top probability (default 0)")
    p.add_argument("--beam", type=int, default=1, metavar="N", help="beam search of width N (default 1: none)")
    p.add_argument(
        "--length-penalty",
        type=float,
        default=0.6,
        metavar="ALPHA",
        help="beam search ranks log P / ((5 + |Y|) / 6) ** ALPHA (default: 0.6)",
    )
    p.add_argument("--early-stopping", action="store_true", help="beam search: stop at N finished hypotheses")
    p.add_argument(
        "--num-return-sequences",
        type=int,
        default=1,
        metavar="N",
        help="outputs per input: samples, or the N best beams (default: 1)",
    )
    p.add_argument(
        "--repetition-penalty",
        type=float,
        default=1.0,
        help="> 1 makes tokens already seen less likely (default 1: off)",
    )
    p.add_argument(
        "--no-repeat-ngram", type=int, default=0, metavar="N", help="never repeat an N-gram (default 0: off)"
    )
    p.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="TEXT",
        help="end a sequence once its text contains TEXT (repeatable; not with --beam)",
    )
    p.add_argument("--seed", type=int, default=None, help="make sampling reproducible")
    p.add_argument("--batch-size", type=int, default=32, help="inputs decoded together with --input (default: 32)")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the whole prefix at every step (slow; for checking the cache)",
    )
    p.add_argument("--scores", action="store_true", help="also print each sequence's log-probability and score")
    p.add_argument("--checkpoint", default="last.pt", help="file in RUN_DIR/checkpoints (default: last.pt)")

    p = sub.add_parser(
        "forecast",
        help="fit AR, MLP, RNN, LSTM, GRU, Transformer forecasters on a series, compare",
        description="Fit each model on the same chronological split with the same budget, score "
        "iterated h-step forecasts on the test part (original units), write "
        "OUT/forecast.json, OUT/forecast_info.json and OUT/forecast.png, print a table.",
        epilog="other [data] keys as --data.key=value, e.g. --data.path=series.csv for series_csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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

    p = sub.add_parser(
        "data",
        help="list datasets or describe one",
        description="seqlab data list | seqlab data info NAME [--data.key=value ...]",
    )
    p.add_argument("action", choices=["list", "info"])
    p.add_argument("name", nargs="?", help="dataset name (for info)")

    p = sub.add_parser(
        "plot",
        help="diagnostic figures of a run: curves, gradient flow, gates, attention, positions",
        description="Draw RUN_DIR's diagnostics as PNGs in RUN_DIR/plots/ (also as images in its "
        "TensorBoard) and print their paths; what does not apply to the run's model is "
        "skipped with one line saying why.",
        epilog="--data.path=... / --data.root=...: where the run's data is now, if it moved",
    )
    p.add_argument("run_dir")
    p.add_argument("--what", default="all", choices=["curves", "gradflow", "gates", "attention", "posenc", "all"])
    p.add_argument("--example", type=int, default=0, help="which example of the test split to draw (default: 0)")
    p.add_argument("--checkpoint", default="last.pt", help="file in RUN_DIR/checkpoints (default: last.pt)")
    p.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="OTHER_RUN",
        help="other run directories whose curves go on the same axes (plots/curves_compare.png)",
    )

    p = sub.add_parser(
        "report",
        help="one self-contained HTML page about a run: RUN_DIR/report.html",
        description="Write RUN_DIR/report.html: config, summary metrics, curves, every diagnostic that "
        "applies, an interactive attention view and example outputs; no network needed.",
        epilog="--data.path=... / --data.root=...: where the run's data is now, if it moved",
    )
    p.add_argument("run_dir")
    p.add_argument("--example", type=int, default=0, help="which example of the test split to draw (default: 0)")
    p.add_argument("--checkpoint", default="last.pt", help="file in RUN_DIR/checkpoints (default: last.pt)")

    p = sub.add_parser(
        "compare",
        help="train rnn, lstm, gru, transformer on one task and budget, tabulate",
        description="Train each model family on CONFIG's task, data and step budget, over several "
        "seeds, into ordinary run directories OUT/runs/<family>-seed<s>-<time>/; write "
        "OUT/compare.md (a markdown table), OUT/compare.json and OUT/curves.png (their "
        "validation curves). Run it again to continue an interrupted compare.",
        epilog="overrides: --section.key=value change CONFIG for every family, e.g. --data.seq_len=200",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="preset TOML file; its [model] is kept for the family it belongs to")
    p.add_argument(
        "--models",
        default="rnn,lstm,gru,transformer",
        help="comma-separated families from rnn, lstm, gru, transformer (default: all four)",
    )
    p.add_argument(
        "--budget-steps",
        type=int,
        default=None,
        metavar="N",
        help="optimiser steps per run (default: the config's train.max_steps or epochs)",
    )
    p.add_argument("--seeds", type=int, default=3, help="runs per family, train.seed + 0, 1, ... (default: 3)")
    p.add_argument(
        "--match",
        default="params",
        choices=["params", "hidden"],
        help="params: widths chosen so parameter counts are near the first family's (default); "
        "hidden: every family at the first family's hidden size / d_model",
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/compare-<config name>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    _export_parser(sub)

    p = sub.add_parser(
        "bench",
        help="run a benchmark (recurrent, attention, ...)",
        description="seqlab bench NAME [args]: runs seqlab.bench.NAME; NAME --help lists its options.",
        epilog="benchmarks:\n" + "\n".join(f"  {name:<18} {about}" for name, about in _benchmarks()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
            raise ConfigError(
                f"unrecognised argument {arg!r}; overrides look like --section.key=value "
                f"with section in: {', '.join(allowed)}"
            )
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
        run_dir = train_experiment(
            exp,
            out=args.out,
            run_name=args.name,
            argv=argv,
            progress=not args.quiet,
            resume=args.resume,
            overrides=overrides,
        )
    except (TrainingInterrupted, NonFiniteLoss) as stop:
        if not stop.is_main:
            # Under torchrun every process stops at the same step; rank 0 says why and gives the exit
            # status. A failing status here could make torchrun end rank 0 before it has said it.
            return 0
        if isinstance(stop, NonFiniteLoss):
            print(f"seqlab train: failed: {stop}", file=sys.stderr)
            return 1
        where = (
            f"checkpoint saved at step {stop.step}: {stop.checkpoint}" if stop.checkpoint else "no checkpoint written"
        )
        run = stop.checkpoint.parent.parent if stop.checkpoint else "RUN_DIR"
        print(
            f"seqlab train: interrupted by {signal.Signals(stop.signum).name}; {where}\n"
            f"resume with: seqlab train --resume {run}",
            file=sys.stderr,
        )
        return 128 + stop.signum
    if run_dir is None:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    plot_curves(run_dir / "metrics.jsonl", run_dir / "plots" / "curves.png")
    summary = json.loads((run_dir / "summary.json").read_text())
    shown = {
        k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items() if not isinstance(v, (dict, list))
    }  # data_files (paths and sha256) stay in summary.json
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
    if args.beam < 1:
        raise ConfigError(f"--beam must be >= 1 (1: greedy), got {args.beam}")
    metrics = evaluate_run(
        args.run_dir,
        split=args.split,
        checkpoint=args.checkpoint,
        data_location=location,
        notify=lambda text: print(f"seqlab eval: warning: {text}", file=sys.stderr),
        beam=args.beam,
        length_penalty=args.length_penalty,
    )
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}))  # signatures: text
    return 0


# GenerationConfig's keys as seqlab generate's flags, for its error messages.
GENERATE_FLAGS = {
    "max_new_tokens": "--max-new-tokens",
    "min_new_tokens": "--min-new-tokens",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "min_p": "--min-p",
    "num_beams": "--beam",
    "length_penalty": "--length-penalty",
    "num_return_sequences": "--num-return-sequences",
    "repetition_penalty": "--repetition-penalty",
    "no_repeat_ngram_size": "--no-repeat-ngram",
    "stop_strings": "--stop",
    "seed": "--seed",
}


def cmd_generate(args, extra: list[str], argv: list[str]) -> int:
    import warnings

    from .config import parse_overrides
    from .generate import ContextTooLong, GenerationConfig, GenerationConfigError
    from .train.generate_run import escape, generate_texts, load_generation_run

    location = parse_overrides(_overrides(extra, ("data",))).get("data", {})
    warn = lambda text: print(f"seqlab generate: warning: {text}", file=sys.stderr)  # noqa: E731
    run = load_generation_run(args.run_dir, args.checkpoint, location, notify=warn)
    given = "prompt" if args.prompt is not None else "source" if args.source is not None else None
    if given is not None and given != run.reads:
        raise ConfigError(
            f"{args.run_dir} is a {run.task.replace('_', ' ')} run: give --{run.reads} TEXT "
            f"(or --input FILE), not --{given}"
        )
    if args.input is not None:
        try:
            texts = Path(args.input).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read --input {args.input}: {getattr(err, 'strerror', None) or err}") from None
        names = [f"{args.input}:{i + 1}" for i in range(len(texts))]
    else:
        texts, names = [args.prompt if given == "prompt" else args.source], [f"--{given}"]
    lm = run.task == "language_model"
    temperature = args.temperature if args.temperature is not None else (1.0 if lm and args.beam == 1 else 0.0)
    try:
        cfg = GenerationConfig(
            max_new_tokens=args.max_new_tokens or run.default_max_new_tokens(),
            min_new_tokens=args.min_new_tokens,
            temperature=temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            min_p=args.min_p,
            num_beams=args.beam,
            length_penalty=args.length_penalty if args.beam > 1 else 0.0,
            early_stopping=args.early_stopping,
            num_return_sequences=args.num_return_sequences,
            repetition_penalty=args.repetition_penalty,
            no_repeat_ngram_size=args.no_repeat_ngram,
            stop_strings=tuple(args.stop),
            seed=args.seed,
            use_cache=not args.no_cache,
        )
    except GenerationConfigError as err:
        raise ConfigError(f"{GENERATE_FLAGS.get(err.key, err.key)} {err.detail}") from None
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    streaming = (
        lm and args.output is None and args.input is None and cfg.num_beams == 1 and cfg.num_return_sequences == 1
    )

    def stream(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    with warnings.catch_warnings():
        warnings.simplefilter("always", ContextTooLong)
        warnings.showwarning = lambda message, *rest, **kw: warn(str(message))
        if streaming:
            stream(texts[0])
        results = generate_texts(
            run, texts, cfg, batch_size=args.batch_size, names=names, stream=stream if streaming else None
        )
    lines = []
    for i, (text, outputs) in enumerate(zip(texts, results)):
        for k, out in enumerate(outputs):
            if args.output is not None:
                lines.append(escape(out.text) + (f"\t{out.log_prob:.4f}\t{out.score:.4f}" if args.scores else ""))
            elif streaming:
                print()
            elif lm:
                if len(texts) > 1 or len(outputs) > 1:
                    print(f"--- {names[i] if len(texts) > 1 else 'sample'} {k + 1}")
                print(text + out.text)
            else:
                print(out.text + (f"\t{out.log_prob:.4f}\t{out.score:.4f}" if args.scores else ""))
            if args.scores and args.output is None and lm:
                print(f"[log P = {out.log_prob:.4f}, score = {out.score:.4f}, {out.tokens} tokens]")
    if args.output is not None:
        from .utils import atomic_write_text

        atomic_write_text(args.output, "".join(line + "\n" for line in lines))
        print(f"{sum(len(o) for o in results)} sequences for {len(texts)} inputs written to {args.output}")
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
    from .experiments.forecast import (
        ForecastInterrupted,
        ForecastSettings,
        markdown_table,
        run_forecast,
        write_forecast,
    )

    data_overrides = parse_overrides(_overrides(extra, ("data",))).get("data", {})
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = ForecastSettings(
        data=args.data,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        order=args.order,
        horizons=_int_list(args.horizons, "--horizons"),
        budget_steps=args.budget_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        interval_model="" if args.interval_model == "none" else args.interval_model,
        interval=args.interval,
        device=args.device,
        inputs=args.inputs,
        data_overrides=tuple(sorted(data_overrides.items())),
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


def cmd_plot(args, extra: list[str], argv: list[str]) -> int:
    from .config import parse_overrides
    from .diagnostics.plots import RunDiagnostics

    location = parse_overrides(_overrides(extra, ("data",))).get("data", {})
    diag = RunDiagnostics(args.run_dir, checkpoint=args.checkpoint, example=args.example, data_location=location)
    for result in diag.plot(args.what, compare=args.compare):
        if result.skipped:
            print(f"skipped {result.what}: {result.skipped}")
            continue
        for line in result.lines:
            print(line)
        for path in result.paths:
            print(path)
    return 0


def cmd_report(args, extra: list[str], argv: list[str]) -> int:
    from .config import parse_overrides
    from .diagnostics.report import build_report

    location = parse_overrides(_overrides(extra, ("data",))).get("data", {})
    path, results = build_report(args.run_dir, example=args.example, checkpoint=args.checkpoint, data_location=location)
    for result in results:
        if result.skipped:
            print(f"skipped {result.what}: {result.skipped}")
    print(f"{path}  ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def cmd_compare(args, extra: list[str], argv: list[str]) -> int:
    from .diagnostics.curves import plot_validation_curves
    from .experiments.compare import (
        markdown_table,
        parse_families,
        plan_compare,
        plan_lines,
        run_compare,
        write_compare,
    )
    from .train.config import load_experiment
    from .train.trainer import NonFiniteLoss, TrainingInterrupted

    exp = load_experiment(args.config, _overrides(extra, ("model", "data", "train")))
    plan = plan_compare(
        exp, parse_families(args.models), seeds=args.seeds, match=args.match, budget_steps=args.budget_steps
    )
    out = Path(args.out) if args.out is not None else Path("runs") / f"compare-{Path(args.config).stem}"
    print(f"{plan.budget()}, {len(plan.seeds)} seeds, into {out}")
    for line in plan_lines(plan):
        print(line, flush=True)
    try:
        result = run_compare(
            plan, out, argv=argv, progress=not args.quiet, log=lambda text: print(text, file=sys.stderr, flush=True)
        )
    except TrainingInterrupted as stop:
        print(
            f"seqlab compare: interrupted by {signal.Signals(stop.signum).name} at step {stop.step}; finished runs "
            f"are kept and this one resumes from its checkpoint: run the same command again",
            file=sys.stderr,
        )
        return 128 + stop.signum
    except NonFiniteLoss as err:
        print(f"seqlab compare: failed: {err}", file=sys.stderr)
        return 1
    paths = write_compare(result, out)
    seeds = f", mean of {len(plan.seeds)} seeds" if len(plan.seeds) > 1 else ""
    png = plot_validation_curves(
        {f"{f.member.family} ({f.member.params:,} params{seeds})": f.runs for f in result.families}, out / "curves.png"
    )
    print()
    print(markdown_table(result))
    print(f"{paths['table']}\n{paths['json']}\n{png}")
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


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's model as safetensors, ONNX or a Hugging Face GPT-2 folder",
        description="Export RUN_DIR's checkpoint for other tools (docs/export.md), atomically (temp folder, rename).",
    )
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, help="safetensors, onnx or hf (a GPT as Hugging Face GPT-2)")
    p.add_argument("--checkpoint", default="last.pt", help="file in RUN_DIR/checkpoints (default: last.pt)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export/FORMAT)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")


def cmd_export(args, extra: list[str], argv: list[str]) -> int:
    from .export import export_run

    _overrides(extra, ())
    out, files = export_run(
        args.run_dir, format=args.format, out=args.out, checkpoint=args.checkpoint, force=args.force
    )
    print(f"{out}: {', '.join(files)}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "runs": cmd_runs,
    "eval": cmd_eval,
    "forecast": cmd_forecast,
    "data": cmd_data,
    "bench": cmd_bench,
    "generate": cmd_generate,
    "plot": cmd_plot,
    "report": cmd_report,
    "compare": cmd_compare,
    "export": cmd_export,
}


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

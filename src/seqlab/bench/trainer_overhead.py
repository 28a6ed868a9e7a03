"""The trainer's time per optimiser step against a bare PyTorch loop over the same model and data.

Both loops build the same model from the preset, slice the same in-memory tensors with a shuffled
index, and run forward, backward, gradient clipping and an AdamW step; the trainer adds its
logging (metrics.jsonl, TensorBoard, progress), learning-rate schedule and bookkeeping. Medians
of interleaved repeats; the ratio is trainer / bare (target <= 1.05).

    python benchmarks/trainer_overhead.py            # or: seqlab bench trainer_overhead
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ..data import build_splits
from ..models import build_model
from ..train.config import load_experiment
from ..train.trainer import Trainer

CONFIGS = Path("configs")  # run from the repository root


def bare_loop(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    clip: float,
    seed: int,
    weight_decay: float = 0.0,
) -> float:
    """The loop a user would write by hand; returns seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    start = time.perf_counter()
    for step in range(steps):
        idx = order[(step * batch_size) % len(x) :][:batch_size]
        _, loss = model(x[idx], y[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def trainer_loop(model: torch.nn.Module, exp, train_set, steps: int, task: str) -> float:
    cfg = dataclasses.replace(exp.train, max_steps=steps, eval_every=0, checkpoint_every=0)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, cfg, train_set, None, task=task, run_dir=run_dir, progress=False)
        trainer.save = lambda name: None  # time the steps, not the final checkpoint write
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start


def measure(config: Path, steps: int, repeats: int, overrides: list[str] = ()) -> dict:
    exp = load_experiment(config, ["--train.device=cpu", *overrides])
    splits = build_splits(exp.data)
    x, y = splits.train.tensors
    task = splits.info.get("task", "classification")
    times = {"bare": [], "trainer": []}
    for r in range(repeats + 1):  # the first round warms up and is dropped
        for kind in ("bare", "trainer") if r % 2 == 0 else ("trainer", "bare"):
            torch.manual_seed(0)
            model = build_model(exp.model)
            if kind == "bare":
                t = bare_loop(
                    model,
                    x,
                    y,
                    steps,
                    exp.train.batch_size,
                    exp.train.lr,
                    exp.train.grad_clip,
                    exp.train.seed,
                    exp.train.weight_decay,
                )
            else:
                t = trainer_loop(model, exp, splits.train, steps, task)
            if r:
                times[kind].append(t / steps)
    bare, trainer = statistics.median(times["bare"]), statistics.median(times["trainer"])
    return {
        "preset": config.name,
        "batch": exp.train.batch_size,
        "steps": steps,
        "bare_ms": 1e3 * bare,
        "trainer_ms": 1e3 * trainer,
        "ratio": trainer / bare,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seqlab bench trainer_overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", nargs="+", default=["digits_lstm.toml", "mnist_lstm.toml"], help="presets in configs/ (or paths)"
    )
    parser.add_argument("--steps", type=int, default=400, help="optimiser steps per timed loop")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="--section.key=value",
        help="config overrides for both loops, e.g. --set=--train.tensorboard=false",
    )
    args = parser.parse_args(argv)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.repeats} interleaved repeats"
    )
    print("| preset | batch | bare loop ms/step | trainer ms/step | trainer / bare |")
    print("|---|---|---|---|---|")
    for name in args.configs:
        path = Path(name) if Path(name).is_file() else CONFIGS / name
        try:
            row = measure(path, args.steps, args.repeats, args.set)
        except Exception as err:  # e.g. MNIST files absent: say so, keep the other rows
            print(f"| {name} | - | - | - | skipped: {str(err).splitlines()[0]} |")
            continue
        print(
            f"| {row['preset']} | {row['batch']} | {row['bare_ms']:.2f} | {row['trainer_ms']:.2f} "
            f"| {row['ratio']:.3f} |",
            flush=True,
        )
    return 0

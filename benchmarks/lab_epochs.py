"""Issue 24's lab-preset target: one epoch of configs/mnist_lab.toml per implementation, in one process.

    python benchmarks/lab_epochs.py [IMPLS] [EPOCHS]    # default: fused,compiled,fused,compiled 1

Runs the preset once per name in IMPLS (``--model.impl=NAME``), in that order, so that alternating
fused,compiled,... spreads a drifting machine's speed over both. Prints, per run, the trainer's
training seconds (steps, evaluations and checkpoints; compiles included), the wall time, the test
accuracy and the samples/s logged every 20 steps (median and range, the first two windows left
out), then the ratio of each implementation's mean training seconds to the first one's. Needs the
MNIST IDX files (data/mnist, ../shared/data/mnist or ~/.cache/seqlab/mnist); runs go to a temporary
folder. 2 threads unless OMP_NUM_THREADS says otherwise.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from seqlab.runs import train_experiment
from seqlab.train.config import load_experiment

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mnist_lab.toml"


def train_lab(overrides: list[str], out: Path) -> tuple[dict, list[float], float]:
    """Train the lab preset with ``overrides`` into ``out``: its summary.json, the samples/s logged every
    log_every steps (the first two windows, which hold the compile, left out) and the wall seconds."""
    exp = load_experiment(CONFIG, [*overrides, "--train.tensorboard=false"])
    start = time.perf_counter()
    run = train_experiment(exp, out=out, argv=[], progress=False)
    wall = time.perf_counter() - start
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return summary, [r["train/samples_per_s"] for r in rows if "train/samples_per_s" in r][2:], wall


def main() -> None:
    impls = (sys.argv[1] if len(sys.argv) > 1 else "fused,compiled,fused,compiled").split(",")
    epochs = sys.argv[2] if len(sys.argv) > 2 else "1"
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    print(
        f"cpu {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as out:
        for i, impl in enumerate(impls):
            summary, rates, wall = train_lab([f"--model.impl={impl}", f"--train.epochs={epochs}"], Path(out) / str(i))
            seconds.setdefault(impl, []).append(summary["seconds"])
            print(
                f"{impl}: training {summary['seconds']:.1f} s, wall {wall:.1f} s, "
                f"test accuracy {summary['test/accuracy']:.4f}, samples/s median {statistics.median(rates):.0f} "
                f"({min(rates):.0f}-{max(rates):.0f})",
                flush=True,
            )
    base = statistics.mean(seconds[impls[0]])
    for impl, values in seconds.items():
        print(
            f"{impl}: mean training {statistics.mean(values):.1f} s, x {impls[0]}: {statistics.mean(values) / base:.2f}"
        )


if __name__ == "__main__":
    main()

"""Benchmark: seqlab's recurrent layers against torch.nn at the issue's two sizes.

Every implementation (torch.nn, seqlab "fused", "compiled", "reference", LayerNormLSTM eager
and compiled, and the custom peephole-LSTM cell of examples/custom_cell.py, compiled) is timed
in the same run, with torch.nn twice: as shipped (on CPU its LSTM runs oneDNN's fused RNN
primitive; its GRU does not) and with oneDNN switched off (torch's ATen loop of GEMM +
pointwise ops, driven from C++). The first call of each (its compile, for the compiled ones) is
timed apart and printed as "first call s". They run interleaved
(one call of each per round, so drift on a shared machine hits them all alike), and the median
of the rounds is reported with its ratio to torch.nn's median. Achieved GFLOP/s count only
the matrix multiplies (2 * rows * in * out each; a backward pass counts as twice the forward)
and sit next to the GFLOP/s of ``torch.mm`` doing the same multiplies as one GEMM per layer,
recurrence removed, timed in the same rounds.

    python benchmarks/recurrent.py                # or: seqlab bench recurrent
    python benchmarks/recurrent.py --sizes small --repeats 3 --cell gru
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import seqlab.nn as snn


@dataclass(frozen=True)
class Size:
    name: str
    batch: int
    steps: int
    input_size: int
    hidden_size: int
    num_layers: int

    def __str__(self) -> str:
        return f"B={self.batch}, T={self.steps}, I={self.input_size}, H={self.hidden_size}, L={self.num_layers}"


SIZES = {
    "small": Size("small", 128, 28, 28, 256, 2),  # the lab model: MNIST rows into a 2-layer LSTM
    "large": Size("large", 64, 100, 512, 512, 1),
    "tiny": Size("tiny", 4, 5, 3, 8, 2),  # for a smoke run only
}

NO_ONEDNN = "torch.nn, oneDNN off"

# Targets from the issue, as multiples of torch.nn's time for the same cell, at the two
# sizes (the tiny size is a smoke run: fixed per-call costs dominate it, no target applies).
# "reference" and "layernorm" (eager) have none: they are the equations in plain PyTorch, run
# one step at a time; their ratios are printed for information.
TARGETS = {"fused": 1.10, "compiled": 1.15, "layernorm_compiled": 1.40, "custom": 1.50}
IMPLS = ("fused", "compiled", "reference", "layernorm", "layernorm_compiled", "custom")
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "custom_cell.py"  # in a source checkout
TARGET_SIZES = ("small", "large")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def matmul_flops(size: Size, gates: int) -> float:
    """Forward FLOPs of the matrix multiplies: input and recurrent projections, every layer."""
    G, H, rows = gates * size.hidden_size, size.hidden_size, size.batch * size.steps
    total = 0.0
    for layer in range(size.num_layers):
        layer_in = size.input_size if layer == 0 else H
        total += 2.0 * rows * (layer_in + H) * G
    return total


def build(size: Size, cell: str) -> dict[str, nn.Module]:
    """The layers to compare, all holding torch.nn's weights."""
    torch_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    ours_cls = {"lstm": snn.LSTM, "gru": snn.GRU, "rnn": snn.RNN}[cell]
    args = (size.input_size, size.hidden_size, size.num_layers)
    reference = torch_cls(*args, batch_first=True)
    layers: dict[str, nn.Module] = {"torch.nn": reference}
    for impl in ("fused", "compiled", "reference"):
        layer = ours_cls(*args, batch_first=True, impl=impl)
        layer.load_state_dict(reference.state_dict())
        layers[impl] = layer
    if cell == "lstm":
        layers["layernorm"] = snn.LayerNormLSTM(*args, batch_first=True, impl="reference")
        layers["layernorm_compiled"] = snn.LayerNormLSTM(*args, batch_first=True, impl="compiled")
        custom = example_cell()
        if custom is not None:
            layers["custom"] = snn.Recurrent(custom, *args, batch_first=True, impl="compiled")
    return layers


def example_cell():
    """The peephole LSTM cell of examples/custom_cell.py (None outside a source checkout)."""
    if not EXAMPLE.exists():
        return None
    spec = importlib.util.spec_from_file_location("custom_cell_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # torch.compile looks the cell's class up by its module
    spec.loader.exec_module(module)
    return module.PeepholeLSTMCell


def same_size_gemm(size: Size, gates: int) -> Callable[[], None]:
    """The forward's multiplies as one GEMM per layer, (B*T, I+H) @ (I+H, G*H): no recurrence."""
    G, H, rows = gates * size.hidden_size, size.hidden_size, size.batch * size.steps
    mats = []
    for layer in range(size.num_layers):
        k = (size.input_size if layer == 0 else H) + H
        mats.append((torch.randn(rows, k), torch.randn(k, G)))

    def run():
        for a, b in mats:
            torch.mm(a, b)

    return run


def _time(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


GEMM = "same-size GEMM"


def measure(size: Size, cell: str, passes: list[str], repeats: int, warmup: int, impls: list[str]):
    """[(pass, {implementation: median seconds}, {implementation: first call seconds})]; the
    same-size GEMM is timed in the same rounds."""
    torch.manual_seed(0)
    layers = {k: v for k, v in build(size, cell).items() if k == "torch.nn" or k in impls}
    x = torch.randn(size.batch, size.steps, size.input_size)

    def forward(layer, onednn: bool):
        def run():
            with torch.no_grad(), torch.backends.mkldnn.flags(enabled=onednn):
                layer(x)

        return run

    def forward_backward(layer, onednn: bool):
        def run():
            with torch.backends.mkldnn.flags(enabled=onednn):
                out, _ = layer(x)
                out.sum().backward()
            for p in layer.parameters():
                p.grad = None

        return run

    makers = {"forward": forward, "forward+backward": forward_backward}
    rows = []
    for pass_name in passes:
        fns = {name: makers[pass_name](layer, True) for name, layer in layers.items()}
        # torch's own ATen recurrence: GEMMs and pointwise ops from C++, step by step.
        fns[NO_ONEDNN] = makers[pass_name](layers["torch.nn"], False)
        fns[GEMM] = same_size_gemm(size, GATES[cell])  # forward multiplies only, whatever the pass
        first = {name: _time(fn) for name, fn in fns.items()}  # the compiled ones compile here
        for _ in range(warmup - 1):
            for fn in fns.values():
                fn()
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():  # interleaved: one call of each per round
                times[name].append(_time(fn))
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        rows.append((pass_name, medians, first))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqlab bench recurrent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="small,large", help=f"comma list of {', '.join(SIZES)}")
    parser.add_argument("--cell", default="lstm", choices=sorted(GATES))
    parser.add_argument(
        "--impls",
        default=",".join(IMPLS),
        help=f"comma list of {', '.join(IMPLS)} (the last three: LSTM only)",
    )
    parser.add_argument("--passes", default="forward,forward+backward")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    # torch.backends.mkldnn.flags() warns about Intel-GPU TF32 on every switch; not ours to act on.
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [SIZES[s] for s in args.sizes.split(",")]
    passes = args.passes.split(",")
    impls = args.impls.split(",")
    gates = GATES[args.cell]

    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        parser.error(f"--impls: unknown {', '.join(unknown)}; choose from {', '.join(IMPLS)}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cell={args.cell}, "
        f"median of {args.repeats} interleaved rounds, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print()
    print(
        "| size | pass | implementation | median ms | x torch.nn | target | x torch.nn oneDNN off "
        "| GFLOP/s | same-size GEMM GFLOP/s | first call s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    missed, checked = [], 0
    for size in sizes:
        fwd_flops = matmul_flops(size, gates)
        for pass_name, medians, first in measure(size, args.cell, passes, args.repeats, args.warmup, impls):
            flops = fwd_flops * (3 if pass_name == "forward+backward" else 1)
            gemm_gflops = fwd_flops / medians.pop(GEMM) / 1e9
            first.pop(GEMM)
            base, base_aten = medians["torch.nn"], medians[NO_ONEDNN]
            for name, seconds in medians.items():
                ratio = seconds / base
                target = TARGETS.get(name) if size.name in TARGET_SIZES else None
                target_text = "" if target is None else f"<= {target:.2f}"
                checked += target is not None
                if target is not None and ratio > target:
                    target_text += " (missed)"
                    missed.append(f"{size.name} {pass_name} {name}: {ratio:.2f}x > {target:.2f}x")
                # LayerNormLSTM does extra normalisation work; its GFLOP/s counts only the multiplies.
                print(
                    f"| {size.name} ({size}) | {pass_name} | {name} | {seconds * 1e3:.1f} | {ratio:.2f} "
                    f"| {target_text} | {seconds / base_aten:.2f} | {flops / seconds / 1e9:.1f} | {gemm_gflops:.1f} "
                    f"| {first[name]:.1f} |"
                )
    print()
    if not checked:
        print(f"no targets at these sizes (they are set for {' and '.join(TARGET_SIZES)})")
    else:
        print("all targets met" if not missed else "targets missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: seqlab's attention against torch's, and how attention and an LSTM scale with length.

Three parts, all measured in one run:

1. scaled dot-product attention, forward, at (B=32, heads=8, T=256, d=64), causal and not:
   seqlab's fused path and its reference path, each as a ratio to
   ``torch.nn.functional.scaled_dot_product_attention``;
2. multi-head attention, forward + backward, same sizes (d_model = 512): seqlab's
   ``MultiHeadAttention`` (fused and reference paths) against ``torch.nn.MultiheadAttention``
   holding the same weights (``need_weights=False``, so both use the fused kernel);
3. a scaling table for T = 64 ... 2048: time and peak memory of one forward + backward of
   self-attention (fused and reference paths) and of ``torch.nn.LSTM`` of the same width.

Ratios are medians of interleaved rounds (one call of each contender per round, so drift on a
shared machine hits them all alike). Each scaling point runs in a fresh child process; its peak
memory is the resident-set high-water mark (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` just before the step) minus the resident set before the step, i.e.
what the forward + backward added on top of the model and the inputs.

    python benchmarks/attention.py                 # or: seqlab bench attention
    python benchmarks/attention.py --repeats 5 --lengths 64,256,1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import seqlab.nn as snn
from seqlab.nn.functional import scaled_dot_product_attention

from .timing import interleaved

# Targets from the issue, as multiples of torch's time.
TARGETS = {"sdpa fused": 1.05, "mha fused": 1.10}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def bench_sdpa(B: int, H: int, T: int, d: int, repeats: int) -> str:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, T, d, generator=g) for _ in range(3))
    rows = []
    for causal in (False, True):
        fns = {
            "torch": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
            "fused": lambda: scaled_dot_product_attention(q, k, v, is_causal=causal, impl="fused"),
            "reference": lambda: scaled_dot_product_attention(q, k, v, is_causal=causal, impl="reference"),
        }
        with torch.no_grad():
            t = interleaved(fns, repeats)
        rows.append(
            [
                "causal" if causal else "full",
                f"{t['torch'] * 1e3:.2f}",
                f"{t['fused'] * 1e3:.2f}",
                f"**{t['fused'] / t['torch']:.3f}x** (target <= {TARGETS['sdpa fused']}x)",
                f"{t['reference'] * 1e3:.2f}",
                f"{t['reference'] / t['torch']:.2f}x",
            ]
        )
    title = f"SDPA forward, B={B}, heads={H}, T={T}, d={d}, {repeats} interleaved rounds (median ms)"
    header = ["mask", "torch", "seqlab fused", "fused / torch", "seqlab reference", "reference / torch"]
    return f"{title}\n\n{_table(header, rows)}"


def bench_mha(B: int, H: int, T: int, d: int, repeats: int) -> str:
    torch.manual_seed(0)
    d_model = H * d
    theirs = nn.MultiheadAttention(d_model, H, batch_first=True)
    fused = snn.MultiHeadAttention.from_torch(theirs)
    reference = snn.MultiHeadAttention.from_torch(theirs)
    reference.impl = "reference"
    x = torch.randn(B, T, d_model, requires_grad=True)
    causal_ignore = torch.ones(T, T, dtype=torch.bool).triu(1)  # torch's convention: True = ignore

    rows = []
    for causal in (False, True):

        def run_torch():
            kw = {"attn_mask": causal_ignore, "is_causal": True} if causal else {}
            out, _ = theirs(x, x, x, need_weights=False, **kw)
            out.sum().backward()

        def run(module):
            def step():
                out, _ = module(x, is_causal=causal)
                out.sum().backward()

            return step

        t = interleaved({"torch": run_torch, "fused": run(fused), "reference": run(reference)}, repeats)
        rows.append(
            [
                "causal" if causal else "full",
                f"{t['torch'] * 1e3:.1f}",
                f"{t['fused'] * 1e3:.1f}",
                f"**{t['fused'] / t['torch']:.3f}x** (target <= {TARGETS['mha fused']}x)",
                f"{t['reference'] * 1e3:.1f}",
                f"{t['reference'] / t['torch']:.2f}x",
            ]
        )
    title = (
        f"MultiHeadAttention forward + backward, B={B}, T={T}, d_model={d_model}, heads={H}, "
        f"{repeats} interleaved rounds (median ms)"
    )
    header = ["mask", "nn.MultiheadAttention", "seqlab fused", "fused / torch", "seqlab reference", "reference / torch"]
    return f"{title}\n\n{_table(header, rows)}"


# ------------------------------------------------------------------------------ scaling


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def scaling_point(kind: str, T: int, B: int, width: int, heads: int, repeats: int) -> dict:
    """One forward + backward of ``kind`` at length T: peak extra memory (first call) and median time."""
    torch.manual_seed(0)
    if kind == "lstm":
        model = nn.LSTM(width, width, batch_first=True)

        def step():
            out, _ = model(x)  # (B, T, width)
            out.sum().backward()
    else:
        model = snn.MultiHeadAttention(width, heads, impl=kind)

        def step():
            out, _ = model(x)  # (B, T, width)
            out.sum().backward()

    x = torch.randn(B, T, width, requires_grad=True)
    linux = os.path.exists("/proc/self/clear_refs")
    if linux:
        before = _vm_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current resident set
        step()
        peak_kib = _vm_kib("VmHWM") - before
    else:  # ru_maxrss never goes down: a lower bound of the step's own peak at best
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        x.grad = None
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "kind": kind,
        "T": T,
        "seconds": statistics.median(times),
        "peak_mib": peak_kib / 1024,
        "memory_method": "VmHWM" if linux else "ru_maxrss",
    }


def bench_scaling(lengths: list[int], B: int, width: int, heads: int, repeats: int) -> str:
    kinds = {"fused": "attention (fused)", "reference": "attention (reference)", "lstm": "nn.LSTM"}
    results: dict[tuple[str, int], dict] = {}
    for T in lengths:
        n = max(1, min(repeats, (repeats * 256) // T))  # fewer rounds where one step takes seconds
        for kind in kinds:
            cmd = [
                sys.executable,
                "-m",
                "seqlab.bench.attention",
                "--child",
                json.dumps({"kind": kind, "T": T, "B": B, "width": width, "heads": heads, "repeats": n}),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if proc.returncode:
                raise RuntimeError(f"scaling point {kind} T={T} failed:\n{proc.stderr}")
            results[kind, T] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"  T={T:5d} {kinds[kind]:22s} {results[kind, T]['seconds'] * 1e3:9.1f} ms "
                f"{results[kind, T]['peak_mib']:9.1f} MiB",
                file=sys.stderr,
                flush=True,
            )
    rows = []
    for T in lengths:
        row = [str(T)]
        for kind in kinds:
            r = results[kind, T]
            row += [f"{r['seconds'] * 1e3:.1f}", f"{r['peak_mib']:.1f}"]
        rows.append(row)
    header = ["T"] + [f"{name} {unit}" for name in kinds.values() for unit in ("ms", "MiB")]
    method = next(iter(results.values()))["memory_method"]
    title = (
        f"Scaling, one forward + backward, B={B}, width {width} (attention: {heads} heads, no mask; "
        f"LSTM: hidden {width}); time = median ms, memory = peak MiB above the step's start "
        f"({method}, first call in a fresh process)"
    )
    return f"{title}\n\n{_table(header, rows)}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="seqlab bench attention", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds per comparison (default 15)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--lengths", default="64,128,256,512,1024,2048", help="scaling table lengths ('' skips it)")
    p.add_argument("--scaling-batch", type=int, default=4)
    p.add_argument("--scaling-width", type=int, default=256)
    p.add_argument("--scaling-heads", type=int, default=4)
    p.add_argument("--scaling-repeats", type=int, default=5)
    p.add_argument("--skip", default="", help="comma list of parts to skip: sdpa, mha, scaling")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one scaling point, JSON in and out
    args = p.parse_args(argv)

    if args.child:
        spec = json.loads(args.child)
        print(
            json.dumps(scaling_point(spec["kind"], spec["T"], spec["B"], spec["width"], spec["heads"], spec["repeats"]))
        )
        return 0

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    print(
        f"# seqlab bench attention: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs\n"
    )
    if "sdpa" not in skip:
        print(bench_sdpa(args.batch, args.heads, args.seq_len, args.head_dim, args.repeats), end="\n\n", flush=True)
    if "mha" not in skip:
        print(
            bench_mha(args.batch, args.heads, args.seq_len, args.head_dim, max(3, args.repeats // 2)),
            end="\n\n",
            flush=True,
        )
    lengths = [int(t) for t in args.lengths.split(",") if t.strip()]
    if "scaling" not in skip and lengths:
        print(
            bench_scaling(lengths, args.scaling_batch, args.scaling_width, args.scaling_heads, args.scaling_repeats),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 24: the lab classifier's training step, forward / backward / optimizer, per route; and two experiments.

    python benchmarks/lab_step.py ROUTE [--data mnist|random] [--ftz] [--steps N]
    python benchmarks/lab_step.py ROUTE --trainer N     # the lab preset itself, N steps: samples/s
    python benchmarks/lab_step.py ROUTE --profile       # torch.profiler's table over 30 steps
    python benchmarks/lab_step.py products              # 28 recurrent products: MKL, oneDNN packed

ROUTE: ``fused`` (torch's kernel), ``compiled`` (seqlab's compiled route), or one of two experiments:
the compiled route with an inductor graph pass, defined below and nowhere in the library, applied to
the recurrent matrix products. ``onednn`` runs them on oneDNN with the weight packed once per graph
call, instead of MKL's sgemm per step. ``unfused`` writes addmm as mm plus an add. They are kept so
that the numbers in docs/benchmarks.md ("issue 24, fourth session") can be rerun; neither paid.

The step: the lab model (configs/mnist_lab.toml: 2-layer LSTM of 256, batch 32, 28 rows of 28), its
cross-entropy, backward, clip to 1.0, AdamW. ``--data mnist`` (default): consecutive MNIST training
batches, as the trainer sees. ``--data random``: 16 batches of uniform pixels and random labels,
cycled, as the earlier sessions' A/B scripts did. Trained on those, torch's kernel and AdamW slow down
(docs/benchmarks.md: 38-45 ms a step against 27-33 ms on MNIST batches) while the compiled route
does not, so such scripts understate the compiled route's cost; ``--ftz``
(``torch.set_flush_denormal``, before any thread starts) did not change that. Prints
the median milliseconds of each phase over the steps after 50 warm-up steps. One process per route:
run them alternately, the machine's speed drifts. Needs the MNIST IDX files (data/mnist,
../shared/data/mnist or ~/.cache/seqlab/mnist) for ``--data mnist`` and ``--trainer``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lab_epochs import CONFIG, train_lab  # this script's folder is on sys.path when run as a script
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

from seqlab.data.idx import mnist
from seqlab.models import build_model
from seqlab.nn.recurrent import compiled
from seqlab.train.config import load_experiment

aten = torch.ops.aten

# The experiment: seqlab_bench::pack packs a (K, N) right operand for oneDNN and keeps it under a slot
# fixed at compile time; seqlab_bench::linear multiplies by the packed operand. Raw library ops:
# they dispatch faster than torch.library.custom_op's Python wrapper.
_PACKED: dict[int, torch.Tensor] = {}
_SLOTS = itertools.count()
_LIB = torch.library.Library("seqlab_bench", "DEF")
_LIB.define("pack(Tensor mat2, int rows, int slot) -> Tensor")
_LIB.define("linear(Tensor mat1, Tensor mat2, Tensor packed, int slot) -> Tensor")


def _pack(mat2, rows, slot):
    _PACKED[slot] = torch.ops.mkldnn._reorder_linear_weight(mat2.t(), rows)  # oneDNN's (out, in) weight
    return torch.zeros((), dtype=torch.int64)


def _linear(mat1, mat2, packed, slot):
    return torch.ops.mkldnn._linear_pointwise(mat1, _PACKED[slot], None, "none", [None], "")


_LIB.impl("pack", _pack, "CPU")
_LIB.impl("linear", _linear, "CPU")
_LIB.impl("pack", lambda mat2, rows, slot: mat2.new_empty((), dtype=torch.int64), "Meta")
_LIB.impl("linear", lambda mat1, mat2, packed, slot: mat1.new_empty(mat1.size(0), mat2.size(1)), "Meta")


def shared_products(graph: torch.fx.Graph, targets: tuple) -> dict[torch.fx.Node, list[torch.fx.Node]]:
    """The products (``targets``: aten.mm / aten.addmm) of at most 512 float32 CPU rows whose right
    operand is one node shared by >= 4 of them, by that operand: the recurrent products, the forward's
    H_{t-1} W_h^T and the backward's dL/dH_{t-1} = dL/dA_t W_h (W_h's gradients have a new operand each)."""
    shared: dict[torch.fx.Node, list[torch.fx.Node]] = {}
    for n in graph.nodes:
        if n.op != "call_function" or n.kwargs or n.target not in targets:
            continue
        rows = n.args[-2].meta.get("val")
        if rows is not None and rows.dtype == torch.float32 and rows.device.type == "cpu" and rows.size(0) <= 512:
            shared.setdefault(n.args[-1], []).append(n)
    return {b: users for b, users in shared.items() if len(users) >= 4}


def _replace(graph: torch.fx.Graph, n: torch.fx.Node, product: tuple) -> None:
    """Put ``product`` (target, args) in place of the mm / addmm ``n``, with addmm's added term after it."""
    with graph.inserting_before(n):
        new = graph.call_function(*product)
        new.meta["val"] = n.meta["val"].new_empty(n.meta["val"].shape)
        if n.target is aten.addmm.default:  # bias + mat1 @ mat2: the add joins the pointwise kernel after it
            new = graph.call_function(aten.add.Tensor, (new, n.args[0]))
            new.meta["val"] = n.meta["val"]
    n.replace_all_uses_with(new)
    graph.erase_node(n)


class OneDNNProducts(CustomGraphPass):
    """Post-grad pass: the shared-operand products -> seqlab_bench::linear, the operand packed once."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        for b, users in shared_products(graph, (aten.mm.default, aten.addmm.default)).items():
            slot = next(_SLOTS)
            with graph.inserting_before(users[0]):
                rows = users[0].args[-2].meta["val"].size(0)
                packed = graph.call_function(torch.ops.seqlab_bench.pack.default, (b, rows, slot))
                packed.meta["val"] = b.meta["val"].new_empty((), dtype=torch.int64)
            for n in users:
                _replace(graph, n, (torch.ops.seqlab_bench.linear.default, (n.args[-2], b, packed, slot)))

    def uuid(self):  # inductor's cache key: this pass's name and this file's contents
        return type(self).__name__ + get_hash_for_files((__file__,)).hex()


class UnfusedAddmm(CustomGraphPass):
    """Post-grad pass: the shared-operand addmm(bias, a, b) -> mm(a, b) + bias, so that the add joins
    the pointwise kernel after it instead of addmm copying bias into its output first."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        for users in shared_products(graph, (aten.addmm.default,)).values():
            for n in users:
                _replace(graph, n, (aten.mm.default, n.args[1:]))

    def uuid(self):  # inductor's cache key: this pass's name and this file's contents
        return type(self).__name__ + get_hash_for_files((__file__,)).hex()


PASSES = {"onednn": OneDNNProducts, "unfused": UnfusedAddmm}  # experiments: the compiled route plus a pass


def use_route(route: str) -> str:
    """Install an experiment's compile of the compiled route (module state: one route per process);
    returns the model.impl to train with."""
    if route not in PASSES:
        return route
    compiled._COMPILED[compiled.BACKEND] = torch.compile(
        compiled.unrolled_stack,
        backend=compiled.BACKEND,
        dynamic=False,
        options={"post_grad_custom_post_pass": PASSES[route]()},
    )
    return "compiled"


def step_phases(args) -> None:
    exp = load_experiment(CONFIG, [f"--model.impl={use_route(args.route)}"])
    torch.manual_seed(0)
    model = build_model(exp.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=exp.train.lr)
    B = exp.train.batch_size
    if args.data == "random":
        batches = [(torch.rand(B, 28, 28), torch.randint(0, 10, (B,))) for _ in range(16)]
    else:
        x, y = mnist().tensors  # (60000, 28, 28), (60000,): consecutive batches, cycled past the last
        batches = [(x[i : i + B], y[i : i + B]) for i in range(0, min(args.steps + 50, len(x) // B) * B, B)]
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
    for i in range(args.steps + 50):
        x, y = batches[i % len(batches)]
        t0 = time.perf_counter()
        _, loss = model(x, y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if i >= 50:
            for name, t in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
                phases[name].append(t)
    if args.profile:
        with torch.profiler.profile() as prof:
            for i in range(30):
                x, y = batches[i % len(batches)]
                model(x, y)[1].backward()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    ms = {name: statistics.median(v) * 1e3 for name, v in phases.items()}
    print(
        f"{args.route} ({args.data}{', ftz' if args.ftz else ''}): step {sum(ms.values()):.1f} ms = "
        + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()),
        flush=True,
    )


def trainer_steps(args) -> None:
    overrides = [f"--model.impl={use_route(args.route)}", f"--train.max_steps={args.trainer}"]
    with tempfile.TemporaryDirectory() as out:
        _, rates, _ = train_lab([*overrides, "--train.eval_every=0", "--train.log_every=20"], Path(out))
    print(
        f"{args.route} (trainer, {args.trainer} steps): samples/s median {statistics.median(rates):.0f} "
        f"({min(rates):.0f}-{max(rates):.0f})",
        flush=True,
    )


def products(args) -> None:
    """The forward's 28 recurrent products at the lab's size, H_{t-1} (32, 256) by W_h^T (256, 1024)
    plus the input term: MKL's addmm, oneDNN's linear with W_h packed once, the same through the
    experiment's library op, and (the reference) the same multiply-adds as one GEMM, as the input
    term's product runs. Median ms of 7 rounds of 100 repeats."""
    B, H, T = 32, 256, 28
    h = [torch.randn(B, H) for _ in range(T)]
    term = [torch.randn(B, 4 * H) for _ in range(T)]
    w = torch.randn(4 * H, H)

    def mkl():
        for t in range(T):
            torch.addmm(term[t], h[t], w.t())

    def onednn():
        packed = torch.ops.mkldnn._reorder_linear_weight(w, B)
        for t in range(T):
            torch.ops.mkldnn._linear_pointwise(h[t], packed, None, "none", [None], "") + term[t]

    def library_op():
        token = torch.ops.seqlab_bench.pack(w.t(), B, -1)
        for t in range(T):
            torch.ops.seqlab_bench.linear(h[t], w.t(), token, -1) + term[t]

    xs, terms = torch.cat(h), torch.cat(term)  # (T * B, H), (T * B, 4H): the same multiply-adds in one product
    out = torch.empty_like(terms)  # written in place: a fresh 3.7 MB output would time the page faults

    def one_gemm():
        torch.addmm(terms, xs, w.t(), out=out)

    fns = {"MKL addmm": mkl, "oneDNN packed": onednn, "oneDNN packed, library op": library_op}
    fns["one (896, 256) by (256, 1024) GEMM, the reference"] = one_gemm
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(7):
        for name, fn in fns.items():
            for _ in range(5):
                fn()
            start = time.perf_counter()
            for _ in range(100):
                fn()
            times[name].append((time.perf_counter() - start) / 100 * 1e3)
    flops = 2 * T * B * H * 4 * H
    for name, v in times.items():
        ms = statistics.median(v)
        print(f"{name}: {ms:.2f} ms ({min(v):.2f}-{max(v):.2f}), {flops / ms / 1e6:.0f} GFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("route", choices=["fused", "compiled", *PASSES, "products"])
    parser.add_argument("--data", choices=["mnist", "random"], default="mnist")
    parser.add_argument("--ftz", action="store_true", help="flush denormal floats to zero")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--trainer", type=int, default=0, help="run the preset in the trainer for this many steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's table over 30 steps")
    args = parser.parse_args()
    if args.ftz:  # a per-thread flag: set before the threads are, in case OpenMP's threads inherit it
        torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    cpu = torch.backends.cpu.get_cpu_capability()
    print(f"cpu {cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    if args.route == "products":
        products(args)
    else:
        (trainer_steps if args.trainer else step_phases)(args)


if __name__ == "__main__":
    main()

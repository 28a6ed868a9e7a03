"""Issue 24's A/B: impl="compiled" with the input term computed ahead vs one per step, in one process.

    python benchmarks/compiled_input_term_ab.py B T I H L [ROUNDS]    # e.g. 64 100 512 512 1 5

The committed route computes X W_x + b_x (LayerNormLSTM: LN(X W_x)) for every step before the
unrolled loop; "per step" is the same layer with ``input_function`` returning None, so that each
step reads x_t. LSTM and LayerNormLSTM, forward+backward, torch.nn.LSTM's weights for the LSTM,
median of interleaved rounds, 2 threads; prints a markdown table of ratios to torch.nn.LSTM.
"""

from __future__ import annotations

import sys
import time

import torch

import seqlab.nn as snn


def make(cls, size: tuple[int, ...], ahead: bool, weights: dict) -> torch.nn.Module:
    _, _, n_in, H, L = size
    layer = cls(n_in, H, L, batch_first=True, impl="compiled")
    if cls is snn.LSTM:
        layer.load_state_dict(weights)
    if not ahead:
        layer.input_function = lambda k, d=0: None  # each step reads x_t
    return layer


def main(argv: list[str]) -> None:
    size = tuple(map(int, argv[:5]))
    rounds = int(argv[5]) if len(argv) > 5 else 5
    B, T, n_in, H, L = size
    torch.set_num_threads(2)
    torch.manual_seed(0)
    ref = torch.nn.LSTM(n_in, H, L, batch_first=True)
    layers = {"torch.nn.LSTM": ref}
    for cls in (snn.LSTM, snn.LayerNormLSTM):
        for ahead, how in ((True, "input term ahead"), (False, "per step")):
            layers[f"{cls.__name__} compiled, {how}"] = make(cls, size, ahead, ref.state_dict())
    x = torch.randn(B, T, n_in)

    def run(layer: torch.nn.Module) -> None:
        layer.zero_grad(set_to_none=True)
        layer(x)[0].sum().backward()

    for name, layer in layers.items():
        start = time.perf_counter()
        run(layer)
        print(f"{name}: first call {time.perf_counter() - start:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(rounds):
        for name, layer in layers.items():
            start = time.perf_counter()
            run(layer)
            times[name].append(time.perf_counter() - start)
    base = sorted(times["torch.nn.LSTM"])[rounds // 2]
    cpu = torch.backends.cpu.get_cpu_capability()
    print(f"\nB={B} T={T} I={n_in} H={H} L={L}, CPU {cpu}, torch {torch.__version__}")
    print("| implementation | median ms | x torch.nn |\n|---|---:|---:|")
    for name, t in times.items():
        median = sorted(t)[rounds // 2]
        print(f"| {name} | {median * 1e3:.1f} | {median / base:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])

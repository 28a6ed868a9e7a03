"""``train.compile``: whether the trainer wraps the model in ``torch.compile``, and the compile-time report.

- ``true`` / ``false``: as asked.
- ``"auto"``: compile on a CUDA GPU, never on the CPU. Measured on the 2-core AVX-512 CPU (each
  family's preset, fp32, steady-state samples/s with and without; docs/benchmarks.md), compiling
  the whole model did not pay for any family on the CPU; recurrent models get their compiled
  speed from ``model.impl = "auto"`` / ``"compiled"`` instead, layer by layer. On a GPU inductor
  fuses the Transformer's pointwise work into triton kernels (nanoGPT reports 250 -> 135 ms per
  iteration on an A100); seqlab has not measured it on a GPU.

The compiled recurrent layers time their first call per shape family (the compile); the trainer
prints each once (:func:`report_compile_times`).
"""

from __future__ import annotations

import sys

import torch

from ..nn.recurrent.compiled import compile_seconds

COMPILE_SETTINGS = (True, False, "auto")


def resolve_compile(setting: bool | str, device: torch.device) -> bool:
    """Whether to wrap the model in torch.compile for ``setting`` (true, false or "auto") on ``device``."""
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


def report_compile_times(trainer) -> None:
    """on_step_end: one stderr line for each recurrent shape family compiled since the last call."""
    reported = trainer.__dict__.setdefault("_compile_reported", set())
    for family, seconds in compile_seconds.items():
        if family not in reported:
            reported.add(family)
            if trainer.dist.is_main:
                print(f"compiled recurrent layers ({family}): first call {seconds:.1f} s", file=sys.stderr)

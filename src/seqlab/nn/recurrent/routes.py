"""Which implementation runs a recurrent layer's forward: the one place that decides it.

A layer's ``impl`` is what the user asked for; the route is what runs, for this call:

- ``"native"``: torch's own kernel (``torch._VF.lstm`` etc.) on the layer's parameters.
- ``"compiled"``: the step functions of ``equations.py`` (or a custom cell's), unrolled over
  time and compiled with ``torch.compile`` (``compiled.py``).
- ``"reference"``: the same step functions run eagerly, one step after another (``loop.py``).

Where compilation is unavailable (no C++ compiler, an unsupported platform, or a compile that
failed), "compiled" runs the reference instead, after one warning line.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from ...torch_internals import compile_unavailable_reason

if TYPE_CHECKING:
    from .base import _RecurrentBase

Route = Literal["native", "compiled", "reference"]

# The values of every recurrent module's ``impl``.
IMPLS = ("auto", "fused", "compiled", "reference")


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
    return impl


class CompileUnavailableWarning(UserWarning):
    """torch.compile cannot build code here: the recurrent layers run their eager reference."""


# device type -> why torch.compile cannot run there (None: it can); filled on first use, and
# set by a compile that failed, so that the warning is given once and the failure not retried.
_UNAVAILABLE: dict[str, str | None] = {}


def compile_available(device: torch.device) -> bool:
    """Whether the "compiled" route can run on ``device``; warns once (one line) when it cannot."""
    if device.type not in _UNAVAILABLE:
        reason = compile_unavailable_reason(device)
        _UNAVAILABLE[device.type] = reason
        if reason is not None:
            _warn(device, reason)
    return _UNAVAILABLE[device.type] is None


def mark_compile_failed(layer: _RecurrentBase, device: torch.device, error: BaseException) -> None:
    """Compiling ``layer`` raised although its eager loop runs: that layer runs eagerly from now
    on (others still compile: a custom cell may be what failed), said once."""
    first = str(error).splitlines()[0][:200] if str(error) else ""
    layer._compile_failed = True
    _warn(device, f"torch.compile failed for this {type(layer).__name__} ({type(error).__name__}: {first})")


def _warn(device: torch.device, reason: str) -> None:
    warnings.warn(
        f"seqlab recurrent layers on {device.type}: {reason}; running the eager reference instead",
        CompileUnavailableWarning,
        stacklevel=4,
    )


def select_route(layer: _RecurrentBase, x: Tensor, *, return_gates: bool) -> Route:
    """What runs ``layer`` on input x (any tensor of the input's dtype and device) for this call.

    - impl="reference": "reference".
    - impl="fused" (the standard cells' default): "native" where torch has the configuration (a
      layer torch has, no gate recording, no variational dropout while training); else "reference".
    - impl="compiled": "compiled"; "reference" when recording gates (the eager loop records them).
    - impl="auto": "native" as "fused" does (for the LSTM, torch's kernel is about as fast as the
      compiled equations or faster: compiled / torch 1.01-1.20 at B=128, T=28, H=256 and 0.89 at
      B=64, T=100, H=512 on the CPU, 1.41-1.51 for a whole epoch of the lab preset at batch 32, and
      it costs no compile); else as "compiled" (LayerNormLSTM, custom cells, variational dropout
      while training).

    On the CPU "auto" compiles the GRU too: torch has no oneDNN kernel for it, and the compiled
    equations ran forward+backward in 0.81x nn.GRU's time (docs/benchmarks.md).

    "compiled" becomes "reference" where torch.compile cannot run (:func:`compile_available`) or
    failed for this layer.
    """
    impl = layer.impl
    if impl == "reference":
        return "reference"
    native = layer._has_native and not return_gates and not (layer.training and layer.recurrent_dropout > 0)
    compiled_faster = impl == "auto" and layer.mode == "GRU" and x.device.type == "cpu"
    if impl in ("fused", "auto") and native and not compiled_faster:
        return "native"
    if impl == "fused" or return_gates or getattr(layer, "_compile_failed", False):
        return "reference"
    return "compiled" if compile_available(x.device) else "reference"

"""Every private torch call seqlab makes, and nothing else: check this file on a torch upgrade.

- torch's native RNN kernels (``torch._VF.lstm``, ``gru``, ``rnn_tanh``, ``rnn_relu`` and the
  ``*_cell`` ones), called as ``torch.nn.RNNBase`` / ``RNNCellBase`` call them, and the cuDNN
  weight flattening ported from ``torch/nn/modules/rnn.py``.
- autocast on any device (what ``torch.nn.RNNBase`` checks before its dtype check).
- whether the CPU computes bf16 natively (``torch.ops.mkldnn._is_mkldnn_bf16_supported``), which
  the trainer's ``precision = "auto"`` asks (:func:`native_bf16`).
- whether ``torch.compile`` can build code here (:func:`compile_unavailable_reason`: dynamo's
  platform check, inductor's C++ compiler), and dynamo's recompile limit, raised for the
  compiled recurrent layers (:func:`recompile_limit`).

tests/test_recurrent_layout.py fails if a private call appears anywhere else in the package.
"""

from __future__ import annotations

import contextlib
import shutil

import torch
from torch import _VF, Tensor

_ANY_AUTOCAST = getattr(torch._C, "_is_any_autocast_enabled", None)  # torch >= 2.4


def autocast_enabled() -> bool:
    """Autocast on for any device (torch.is_autocast_enabled() alone sees only CUDA's), as
    torch.nn.RNNBase checks it."""
    if _ANY_AUTOCAST is not None:
        return _ANY_AUTOCAST()
    return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()  # torch < 2.4


# --------------------------------------------------------------------------------------------
# torch's native RNN kernels and cuDNN's weight buffer
# --------------------------------------------------------------------------------------------

_NATIVE_LAYERS = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}
_NATIVE_CELLS = {
    "LSTM": _VF.lstm_cell,
    "GRU": _VF.gru_cell,
    "RNN_TANH": _VF.rnn_tanh_cell,
    "RNN_RELU": _VF.rnn_relu_cell,
}


# torch.compile runs it eagerly, as it does torch.nn's own RNN modules: inductor cannot lower
# the oneDNN RNN op on CPU.
@torch.compiler.disable
def native_layer(
    mode: str,
    x: Tensor,
    batch_sizes: Tensor | None,
    hx,
    weights: list[Tensor],
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    batch_first: bool,
):
    """torch's fused kernel for ``mode`` ("LSTM", "GRU", "RNN_TANH", "RNN_RELU"), called as
    torch.nn.RNNBase calls it: padded x (batch_sizes None) or a PackedSequence's data."""
    fn = _NATIVE_LAYERS[mode]
    if batch_sizes is None:
        return fn(x, hx, weights, bias, num_layers, dropout, training, bidirectional, batch_first)
    return fn(x, batch_sizes, hx, weights, bias, num_layers, dropout, training, bidirectional)


def native_cell(mode: str, x: Tensor, hx, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None):
    """torch's one-step kernel for ``mode``; hx is h, or (h, c) for the LSTM."""
    return _NATIVE_CELLS[mode](x, hx, w_ih, w_hh, b_ih, b_hh)


def flatten_cudnn_weights(
    weights: list[Tensor],
    mode: str,
    *,
    input_size: int,
    hidden_size: int,
    proj_size: int,
    num_layers: int,
    bias: bool,
    batch_first: bool,
    bidirectional: bool,
) -> None:
    """Put the parameters into one contiguous cuDNN weight buffer, as torch.nn.RNNBase does.

    A port of torch's flatten_parameters (torch/nn/modules/rnn.py), including its short-circuits:
    not CUDA, mixed dtypes, a weight cuDNN cannot take, or aliased parameters leave them as
    they are. Without it cuDNN warns and copies the separate weights on every call.
    """
    if not all(isinstance(w, Tensor) for w in weights):
        return
    first = weights[0]
    for w in weights:
        if w.dtype != first.dtype or not w.is_cuda or not torch.backends.cudnn.is_acceptable(w):
            return
    if len({w.data_ptr() for w in weights}) != len(weights):  # aliased: torch's copying path
        return
    with torch.cuda.device_of(first):
        import torch.backends.cudnn.rnn as cudnn_rnn

        # no_grad: _cudnn_rnn_flatten_weight rewrites the parameters' storage in place.
        with torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                num_weights = (4 if bias else 2) + (1 if proj_size > 0 else 0)
                torch._cudnn_rnn_flatten_weight(
                    weights,
                    num_weights,
                    input_size,
                    cudnn_rnn.get_cudnn_mode(mode),
                    hidden_size,
                    proj_size,
                    num_layers,
                    batch_first,
                    bool(bidirectional),
                )


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device``: a CUDA GPU with bf16, or a CPU whose oneDNN has
    bf16 kernels (AVX-512 or AMX). Elsewhere (an AVX2-only CPU) oneDNN emulates bf16, many times slower
    than fp32: ``seqlab bench gpt`` measured 17x on an AVX2 EPYC."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the check: assume the slow case
        return False


# --------------------------------------------------------------------------------------------
# torch.compile: can it build code here, and how often may one function recompile
# --------------------------------------------------------------------------------------------


def compile_unavailable_reason(device: torch.device) -> str | None:
    """None where torch.compile can build code for ``device``; else why not, in a few words.

    Cheap checks only (no compilation): dynamo supports this Python and platform; for the CPU,
    inductor's C++ compiler (``torch._inductor.config.cpp.cxx``, or c++/g++/clang++) is on PATH;
    for CUDA, triton imports. A compile that still fails is caught where it runs.
    """
    try:
        import torch._dynamo
        import torch._inductor.config as inductor_config
    except Exception as e:  # noqa: BLE001 - a build without dynamo or inductor
        return f"torch.compile is not importable ({type(e).__name__})"
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python or platform"
    if device.type == "cpu":
        configured = inductor_config.cpp.cxx[0] if isinstance(inductor_config.cpp.cxx, tuple) else None
        candidates = [configured] if configured else ["c++", "g++", "clang++"]
        if not any(shutil.which(c) for c in candidates):
            return "no C++ compiler found (inductor needs one for the CPU: install g++ or clang++)"
        return None
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "triton is not installed (inductor needs it for CUDA)"
    return f"torch.compile is not set up here for {device.type!r} tensors"


def recompile_limit(n: int):
    """dynamo's per-function recompile limit raised to ``n`` for what runs inside (default 8):
    one compiled function serves every recurrent layer, sequence length and dtype."""
    import torch._dynamo.config as dynamo_config

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"  # torch < 2.6
    if getattr(dynamo_config, name) >= n:
        return contextlib.nullcontext()
    return dynamo_config.patch({name: n})


def forget_rnn_dispatch() -> None:
    """Empty the Python dispatch caches of aten.lstm and aten.gru (for ONNX export).

    torch.onnx.export, given dynamic shapes, swaps in a while-loop decomposition of these ops for
    the time of the export (``torch.export._patches``) but leaves the op's dispatch cache as it
    was: seen on torch 2.13, a second LSTM export in one process took the cached unrolled
    decomposition and fixed the sequence length. An empty cache makes each export look them up anew.
    """
    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if cache is not None:
            cache.clear()

"""Every private torch call the recurrent layers make, and nothing else: check this file on a torch upgrade.

- torch's native RNN kernels (``torch._VF.lstm``, ``gru``, ``rnn_tanh``, ``rnn_relu`` and the
  ``*_cell`` ones), called as ``torch.nn.RNNBase`` / ``RNNCellBase`` call them, and the cuDNN
  weight flattening ported from ``torch/nn/modules/rnn.py``.
- oneDNN's linear (``torch.ops.mkldnn._reorder_linear_weight``, ``_linear_pointwise`` and its
  ``.binary`` add), which the fast paths (``fast/``) multiply through: tried once for real
  before first use (:func:`probe_onednn_linear`); any failure selects plain ``F.linear``.
- the checks the fast paths branch on: autocast on any device, oneDNN switched on, forward-mode
  AD or a torch.func transform active; and ``DelayedError`` for the first-order-only backward.
- whether the CPU computes bf16 natively (``torch.ops.mkldnn._is_mkldnn_bf16_supported``), which
  the trainer's ``precision = "auto"`` asks (:func:`native_bf16`).

tests/test_recurrent_variants.py fails if a private call appears anywhere else in the package.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import _VF, Tensor

# --------------------------------------------------------------------------------------------
# Checks the fast paths branch on. They run several times per time step, so what can be looked
# up once is looked up here, at import.
# --------------------------------------------------------------------------------------------

_ANY_AUTOCAST = getattr(torch._C, "_is_any_autocast_enabled", None)  # torch >= 2.4
_MKLDNN_BUILT = torch.backends.mkldnn.is_available()


def autocast_enabled() -> bool:
    """Autocast on for any device (torch.is_autocast_enabled() alone sees only CUDA's), as
    torch.nn.RNNBase checks it."""
    if _ANY_AUTOCAST is not None:
        return _ANY_AUTOCAST()
    return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()  # torch < 2.4


def plain_autograd_only() -> bool:
    """Forward-mode AD or a torch.func transform (jvp, grad, vmap) is active: the oneDNN ops
    have no forward-AD formula and seqlab's autograd Functions no functorch support."""
    return torch._C._are_functorch_transforms_active() or torch.autograd.forward_ad._current_level >= 0


def delayed_error(message: str, n_outputs: int):
    """torch's node that raises ``message`` when a backward reaches it (once_differentiable's)."""
    return torch._C._functions.DelayedError(message.encode(), n_outputs)


# --------------------------------------------------------------------------------------------
# oneDNN's linear
# --------------------------------------------------------------------------------------------


def onednn_pack(w: Tensor, batch: int) -> Tensor:
    """W (out, in), contiguous, in oneDNN's blocked layout for about ``batch`` rows of x."""
    return torch.ops.mkldnn._reorder_linear_weight(w, batch)


def onednn_linear(x: Tensor, w: Tensor, bias: Tensor | None = None, post: str = "none") -> Tensor:
    """post(x W^T + bias), post "none" or "sigmoid" fused into the GEMM; w packed or plain."""
    return torch.ops.mkldnn._linear_pointwise(x, w, bias, post, [], "")


def onednn_linear_add(x: Tensor, add: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """x W^T + bias + add, the add fused into the GEMM's epilogue; w packed or plain."""
    return torch.ops.mkldnn._linear_pointwise.binary(x, add, w, bias, "add")


def probe_onednn_linear() -> bool:
    """One tiny real call of each private oneDNN op used here, checked against F.linear.

    They are private (torch.ops.mkldnn._*): a build may have them and still reject a call, or
    lack them. Any failure means the plain F.linear / addmm route instead.
    """
    try:
        with torch.no_grad():
            # Fixed values, not torch.randn: the probe must not move the global random state.
            v = lambda *shape: torch.linspace(-1, 1, math.prod(shape), dtype=torch.float32).view(shape)  # noqa: E731
            w, b, x, add = v(3, 2), v(3), v(4, 2).flip(0), v(4, 3).flip(1)  # (out, in), (out,), (n, in), (n, out)
            packed = onednn_pack(w, 4)
            ok = torch.allclose(onednn_linear(x, packed, b), F.linear(x, w, b), atol=1e-4)
            ok &= torch.allclose(onednn_linear_add(x, add, packed, b), F.linear(x, w, b) + add, atol=1e-4)
            ok &= torch.allclose(onednn_linear(x, w, b), F.linear(x, w, b), atol=1e-4)
            ok &= torch.allclose(onednn_linear(x, packed, b, "sigmoid"), torch.sigmoid(F.linear(x, w, b)), atol=1e-4)
            # transposed views, as fast.ops._mm_at_b and linear's backward pass them
            ok &= torch.allclose(onednn_linear(x.t(), add.t()).t(), add.t().mm(x), atol=1e-4)
            ok &= torch.allclose(onednn_linear(add, w.t()), add.mm(w), atol=1e-4)
            return bool(ok)
    except Exception:  # noqa: BLE001 - whatever a build raises, the plain route works
        return False


_ONEDNN_LINEAR: bool | None = None  # the probe's answer, on the first call that could use oneDNN


def _onednn_linear_works() -> bool:
    global _ONEDNN_LINEAR
    if _ONEDNN_LINEAR is None:
        _ONEDNN_LINEAR = probe_onednn_linear()
    return _ONEDNN_LINEAR


def cpu_float32(t: Tensor) -> bool:
    """A float32 CPU tensor outside torch.compile and autocast: where the oneDNN route runs."""
    return (
        t.dtype == torch.float32
        and t.device.type == "cpu"
        and not autocast_enabled()
        and not torch.compiler.is_compiling()
    )


def onednn_usable(t: Tensor) -> bool:
    """The oneDNN ops may take t: float32 on CPU, oneDNN built, switched on and working.

    Under torch.compile the plain F.linear / addmm route: inductor cannot lower the private
    oneDNN ops, and the compiled graph fuses the plain route's pointwise work anyway. Under
    autocast too: the private ops do not take part in it, F.linear / addmm run in bf16.
    """
    return (
        cpu_float32(t)
        and _MKLDNN_BUILT
        and torch._C._get_mkldnn_enabled()
        and (_ONEDNN_LINEAR or _onednn_linear_works())
    )


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

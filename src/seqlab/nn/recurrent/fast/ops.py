"""``F.linear`` and ``torch.tanh`` with the same numbers, through faster CPU kernels.

The fused loops call a small GEMM and a few pointwise functions at every time step, so which
kernels do that work decides their speed. On the CPUs this project is measured on (AMD EPYC,
torch 2.13): ``torch.mm`` / ``F.linear`` go to MKL, which reaches about half the GFLOP/s of
oneDNN's JIT-compiled kernels (the ones torch's own LSTM uses through oneDNN's RNN primitive);
and ``torch.tanh`` runs about 5x slower than ``torch.sigmoid`` (docs/benchmarks.md).

- :func:`linear` is ``F.linear(x, w, b)``: oneDNN for float32 CPU tensors, with a backward
  that also runs through oneDNN and can itself be differentiated (``create_graph=True``).
- :func:`tanh` is ``torch.tanh``: on float32 CPU tensors computed as 1 - 2 sigmoid(-2x), the
  same function (an identity), equal to torch.tanh to float32 rounding.
- :class:`PackedWeight` + :func:`packed_linear`: the fused loops' multiply, with W packed once
  per forward into oneDNN's blocked layout and an optional ``add`` fused into the GEMM's epilogue.
- :func:`mm_at_b`: the weight gradient a^T b as one GEMM over all rows.

The reference step functions use none of them (they are plain PyTorch, so they check these
kernels independently). Everywhere else (GPU, float64, autocast, torch.compile, a torch built
without oneDNN, or ``torch.backends.mkldnn.flags(enabled=False)``) each of these is plain
``F.linear`` / ``torch.tanh`` / ``torch.addmm`` / ``torch.mm``. The oneDNN ops themselves are
called through ``torch_internals``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..torch_internals import (
    cpu_float32,
    onednn_linear,
    onednn_linear_add,
    onednn_pack,
    onednn_usable,
    plain_autograd_only,
)


def tanh(x: Tensor) -> Tensor:
    """``torch.tanh(x)``; on float32 CPU tensors as 1 - 2 sigmoid(-2x) (the same function).

    torch.tanh on CPU evaluates scalar libm per element (about 2.2 ns each on the measuring
    machine) while torch.sigmoid is vectorised (0.25 ns); the identity's three ops cost about a
    third of one torch.tanh. Equal to torch.tanh within 2.4e-7 absolute; autograd
    differentiates the three ops (to any order). Elsewhere: torch.tanh itself.
    """
    if cpu_float32(x):
        # 1 - 2 sigmoid(-2x), with 1 and -2 kept 0-dim tensors: a Python number here would be
        # wrapped into a tensor and converted on every call. (-2x as x - 3x would give
        # inf - inf = nan at x = +-inf, where tanh is +-1.)
        return torch.add(_ONE, torch.sigmoid(torch.mul(x, _MINUS_TWO)), alpha=-2)
    return torch.tanh(x)


with torch.inference_mode(False):  # plain tensors even if seqlab is imported in inference mode
    _ONE = torch.ones((), dtype=torch.float32)
    _MINUS_TWO = torch.full((), -2.0, dtype=torch.float32)


def mm_at_b(a: Tensor, b: Tensor) -> Tensor:
    """a^T b for the weight gradients, (N, out)^T (N, in) -> (out, in): one big GEMM over all rows.

    oneDNN takes the transposed views as they are (about twice MKL's speed on this CPU, and a
    contiguous copy of a^T alone would cost as much as MKL's whole GEMM).
    """
    if onednn_usable(a) and a.size(0) > 0:  # oneDNN rejects an empty reduction
        return onednn_linear(b.t(), a.t()).t()  # ((in, out))^T
    return a.t().mm(b)


class PackedWeight:
    """W (out, in) of y = x W^T, packed once per forward call for oneDNN's CPU matmul.

    The recurrence calls the same small GEMM at every step, so packing W once (into oneDNN's
    blocked layout, for ``batch`` rows) rather than at every call is part of keeping up with
    torch's fused kernel. ``onednn`` is False where the plain route runs (module docstring).
    """

    def __init__(self, w: Tensor, batch: int) -> None:
        self.w, self.batch = w, batch
        self.onednn = onednn_usable(w) and batch > 0  # oneDNN rejects empty inputs (B = 0)
        self._packed: Tensor | None = None
        self._packed_t: Tensor | None = None
        self._w_t: Tensor | None = None

    def packed(self) -> Tensor:  # W for x W^T
        if self._packed is None:
            self._packed = onednn_pack(self.w.detach().contiguous(), self.batch)
        return self._packed

    def packed_t(self) -> Tensor:  # W^T for the backward's g W
        if self._packed_t is None:
            self._packed_t = onednn_pack(self.w.detach().t().contiguous(), self.batch)
        return self._packed_t

    def w_t(self) -> Tensor:  # W^T contiguous, for the torch.addmm fallback
        if self._w_t is None:
            self._w_t = self.w.t().contiguous()
        return self._w_t


def _onednn_forward(x: Tensor, weight: Tensor, bias: Tensor | None, add: Tensor | None) -> Tensor:
    """x W^T + bias (+ add, fused into the GEMM's epilogue) by oneDNN; weight packed or plain."""
    if bias is not None and not bias.is_contiguous():  # oneDNN reads the bias as dense memory
        bias = bias.contiguous()
    if add is None:
        return onednn_linear(x, weight, bias)
    return onednn_linear_add(x, add.contiguous(), weight, bias)


class _OneDNNLinear(torch.autograd.Function):
    """x W^T + bias + add through oneDNN, W packed (``pw``) or as it is (``pw`` None).

    The backward runs g W and g^T x through oneDNN too. Under ``create_graph=True`` it uses
    plain matmuls instead, which autograd records, so the gradient can be differentiated again.
    """

    @staticmethod
    def forward(ctx, x, w, bias, add, pw: PackedWeight | None):
        ctx.pw = pw
        ctx.save_for_backward(x, w)
        return _onednn_forward(x, w if pw is None else pw.packed(), bias, add)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_b = g.sum(0) if need[2] else None
        grad_add = g if need[3] else None
        if torch.is_grad_enabled():  # create_graph=True: ops autograd can differentiate
            return (g.mm(w) if need[0] else None, g.t().mm(x) if need[1] else None, grad_b, grad_add, None)
        g = g.contiguous()
        weight_t = w.t() if ctx.pw is None else ctx.pw.packed_t()  # (in, out): the weight of g -> g W
        grad_x = onednn_linear(g, weight_t) if need[0] else None
        grad_w = mm_at_b(g, x) if need[1] else None
        return grad_x, grad_w, grad_b, grad_add, None


def _onednn_call(x: Tensor, w: Tensor, bias: Tensor | None, add: Tensor | None, pw: PackedWeight | None) -> Tensor:
    if torch.is_grad_enabled() and (
        x.requires_grad
        or w.requires_grad
        or (bias is not None and bias.requires_grad)
        or (add is not None and add.requires_grad)
    ):
        return _OneDNNLinear.apply(x, w, bias, add, pw)
    # No graph to record: skip the autograd Function's per-call overhead.
    return _onednn_forward(x, w if pw is None else pw.packed(), bias, add)


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``F.linear(x, w, b)`` = x W^T + b, (n, in) -> (n, out), via oneDNN on float32 CPU tensors.

    Same numbers as F.linear (to float32 rounding), same autograd including double backward;
    only the GEMM library differs (module docstring). Anything else (other shapes or dtypes, a
    bias that is not a contiguous (out,) vector, forward-mode AD, torch.func transforms) goes to
    F.linear itself, which also gives the error messages for bad shapes.
    """
    if (
        x.dim() == 2
        and w.dim() == 2
        and x.size(0) > 0
        and x.size(1) == w.size(1)
        and x.dtype == w.dtype
        and (b is None or (b.dim() == 1 and b.size(0) == w.size(0) and b.dtype == w.dtype and b.is_contiguous()))
        and w.device == x.device
        and onednn_usable(x)
        and not plain_autograd_only()
    ):
        return _onednn_call(x, w, b, None, None)
    return F.linear(x, w, b)


def packed_linear(x: Tensor, pw: PackedWeight, bias: Tensor | None = None, add: Tensor | None = None) -> Tensor:
    """x W^T + bias + add with W packed: (n, in) -> (n, out). The fused loops' multiply."""
    if pw.onednn and not plain_autograd_only():
        return _onednn_call(x, pw.w, bias, add, pw)
    if add is None:
        return F.linear(x, pw.w, bias)
    if bias is None:
        return torch.addmm(add, x, pw.w_t())
    return torch.addmm(add + bias, x, pw.w_t())

"""The own fused loop's backward: dW_hh as one GEMM after the loop, first-order only.

The fused loop computes A_t = A_x,t + H_{t-1} W_hh^T with W_hh detached, so autograd does not
run one small (H, B) @ (B, G) weight-gradient GEMM per step. The loop keeps each H_{t-1} on a
:class:`RecurrentInputTape`; :class:`BatchedWeightGrad` then forms dW_hh = dA^T [H_0; ...; H_{T-1}]
in one GEMM when the backward reaches the projected inputs.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..torch_internals import delayed_error
from .ops import mm_at_b

DOUBLE_BACKWARD = (
    "double backward is not supported by seqlab's own fused recurrence (impl='fused_own', "
    "or impl='fused' with recurrent_dropout while training or return_gates=True): "
    "its backward is first-order only. Use impl='reference' to "
    "differentiate the gradient (create_graph=True) again."
)


def first_order_only(backward):
    """torch's once_differentiable, with an error that names the path and what to use instead.

    The backward runs without recording a graph; under create_graph=True its outputs get a node
    that raises when something differentiates through it.
    """

    @functools.wraps(backward)
    def wrapper(ctx, *args):
        with torch.no_grad():
            outputs = backward(ctx, *args)
        if not torch.is_grad_enabled() or not any(isinstance(a, Tensor) and a.requires_grad for a in args):
            return outputs
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        err = delayed_error(DOUBLE_BACKWARD, len(outputs))

        def aliased(t):  # a copy of the tensor that requires grad, so that it gets err as grad_fn
            return None if t is None else t.detach().requires_grad_(True)

        return err(*[aliased(t) for t in outputs])

    return wrapper


class RecurrentInputTape:
    """The H_{t-1} that each step of one fused loop multiplied by W_hh (dropout mask applied),
    detached, kept for :class:`BatchedWeightGrad`. The loop runs backwards in time for the
    reverse direction, so :meth:`rows` puts them back into the projected inputs' time order."""

    def __init__(self, reverse: bool) -> None:
        self.reverse = reverse
        self.kept: list[Tensor] = []  # in the loop's running order, each (bs_t, H_out)

    def keep(self, h_prev: Tensor) -> None:
        self.kept.append(h_prev.detach())

    def rows(self, dtype: torch.dtype) -> Tensor:
        """(N, H_out): every step's H_{t-1}, in the rows' time order, as ``dtype``."""
        steps = self.kept[::-1] if self.reverse else self.kept
        return torch.cat(steps, dim=0).to(dtype)


class BatchedWeightGrad(torch.autograd.Function):
    """Identity on the projected inputs A_x (N, G) whose backward also returns dW_hh in one GEMM.

    Since dL/dA_t = dL/dA_x,t, the gradient arriving here after the whole loop's backward is dA
    for every step, and dW_hh = dA^T H_prev is one (G, N) @ (N, H) GEMM over the tape's H_{t-1}.
    """

    @staticmethod
    def forward(ctx, xp, w_hh, tape: RecurrentInputTape, perm):
        ctx.tape, ctx.perm, ctx.w_dtype = tape, perm, w_hh.dtype
        return xp.view_as(xp)

    @staticmethod
    @first_order_only
    def backward(ctx, grad):
        # Under autocast grad is bf16/fp16 while the kept H_{t-1} may be float32 (h_0, or the
        # states of a float32 model): multiply in grad's dtype, as autocast's matmul did forward.
        grad_w = mm_at_b(grad, ctx.tape.rows(grad.dtype)).to(ctx.w_dtype)  # (G, N) @ (N, H_out)
        if ctx.perm is not None:  # undo the gate reordering (an involution)
            grad_w = grad_w.index_select(0, ctx.perm)
        return grad, grad_w, None, None


def batched_weight_grad(
    xp: Tensor, w_hh: Tensor, reverse: bool, perm: Tensor | None = None
) -> tuple[Tensor, Tensor, RecurrentInputTape | None]:
    """(xp, W_hh for the loop, the tape the loop fills), or (xp, W_hh, None) without grad.

    With a tape the loop's W_hh is detached and BatchedWeightGrad gives its gradient. Under
    torch.compile also no tape: autograd then forms dW_hh step by step, because a tape filled
    only as the loop runs cannot be traced.
    """
    if torch.compiler.is_compiling() or not (torch.is_grad_enabled() and w_hh.requires_grad):
        return xp, w_hh, None
    tape = RecurrentInputTape(reverse)
    return BatchedWeightGrad.apply(xp, w_hh, tape, perm), w_hh.detach(), tape

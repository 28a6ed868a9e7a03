"""seqlab's own fused recurrence (``impl="fused_own"``, and "fused" where torch has no kernel).

The same equations as ``equations.py``, rearranged for speed and tested equal to them:

- the input projections of every time step are one matrix multiply, X W_x^T + b over all N
  (step, sequence) rows, before the loop; a step then only does H_{t-1} W_h^T (``add``-fused
  into the GEMM on oneDNN, W_h packed once per call) and the pointwise gates;
- the LSTM's gate rows are reordered i, f, o, g (:func:`ifog`), so one sigmoid covers three gates;
- the LSTM's and RNN's backward form dW_hh in one GEMM after the loop (``backward.py``).

Each builder takes the layer's input rows (N, H_in) and one (layer, direction)'s weights by
short name, and returns the projected inputs (N, G) and the step that consumes them (a
``loop.Step``). ``batch`` is B, the row count W_hh is packed for; ``reverse`` says the loop runs
T..1, which the weight gradient's tape needs to put its rows back in time order.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..equations import GRUStep, LSTMStep
from ..loop import Step, Weights
from .backward import batched_weight_grad
from .ops import PackedWeight, linear, packed_linear, tanh

_IFOG: dict[tuple[int, torch.device], Tensor] = {}


def ifog(H: int, device) -> Tensor:
    """Row order i, f, o, g for torch's i, f, g, o gate blocks: the fused step then applies one
    sigmoid to the first 3H columns and one tanh to the last H, instead of four calls.
    Built once per (H, device) and reused by every forward."""
    key = (H, torch.device(device))
    perm = None if torch.compiler.is_compiling() else _IFOG.get(key)
    if perm is None:
        # Never an inference tensor: indexing saves the index for backward.
        with torch.inference_mode(False):
            perm = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]).to(
                device
            )
        if not torch.compiler.is_compiling():
            _IFOG[key] = perm
    return perm


class CellUpdate(NamedTuple):
    """The fused LSTM step's gates and new cell state, each (bs, H)."""

    input: Tensor
    forget: Tensor
    output: Tensor
    candidate: Tensor
    c: Tensor


def lstm_cell_update(a: Tensor, c_prev: Tensor, H: int) -> CellUpdate:
    """Gates and cell update from the pre-activations a (bs, 4H) in row order i, f, o, g (see ifog)."""
    a_ifo, a_g = a.split([3 * H, H], dim=1)
    i_t, f_t, o_t = torch.sigmoid(a_ifo).chunk(3, dim=1)  # input, forget, output gates at once
    g_t = tanh(a_g)  # candidate
    c_t = torch.addcmul(f_t * c_prev, i_t, g_t)  # cell update: f * c + i * g
    return CellUpdate(input=i_t, forget=f_t, output=o_t, candidate=g_t, c=c_t)


def _lstm_step_result(h_t: Tensor, u: CellUpdate) -> LSTMStep:
    return LSTMStep(h_t, u.c, input=u.input, forget=u.forget, candidate=u.candidate, output=u.output)


def fused_rnn(layer_in: Tensor, w: Weights, nonlinearity: str, *, batch: int, reverse: bool) -> tuple[Tensor, Step]:
    """Elman RNN: A_x = X W_x^T + b_x + b_h for all rows; per step H_t = act(A_x,t + H_{t-1} W_h^T)."""
    b = None if w["b_ih"] is None else w["b_ih"] + w["b_hh"]
    xp = packed_linear(layer_in, PackedWeight(w["w_ih"], layer_in.size(0)), b)  # (N, H): all steps
    xp, w_hh, tape = batched_weight_grad(xp, w["w_hh"], reverse)
    pw_hh, act = PackedWeight(w_hh, batch), tanh if nonlinearity == "tanh" else torch.relu

    def step(xp_t, state, mask):
        h = state[0] if mask is None else state[0] * mask
        if tape is not None:
            tape.keep(h)
        return (act(packed_linear(h, pw_hh, add=xp_t)),), None

    return xp, step


def fused_lstm(layer_in: Tensor, w: Weights, *, batch: int, reverse: bool) -> tuple[Tensor, Step]:
    """LSTM (with proj_size's W_hr if given): A_x for all rows in row order i, f, o, g; per step
    A_t = A_x,t + H_{t-1} W_h^T, then the gates, the cell update and H_t = O_t tanh(C_t)."""
    H = w["w_ih"].size(0) // 4
    perm = ifog(H, layer_in.device)  # gate rows reordered i, f, o, g
    b = None if w["b_ih"] is None else (w["b_ih"] + w["b_hh"])[perm]
    xp = packed_linear(layer_in, PackedWeight(w["w_ih"][perm], layer_in.size(0)), b)  # (N, 4H), all steps
    xp, w_hh, tape = batched_weight_grad(xp, w["w_hh"], reverse, perm)
    pw_hh = PackedWeight(w_hh[perm], batch)  # (4H, H_out), packed once per call
    w_hr = w["w_hr"]

    def step(xp_t, state, mask):
        h, c = state
        hr = h if mask is None else h * mask
        if tape is not None:
            tape.keep(hr)
        a = packed_linear(hr, pw_hh, add=xp_t)  # (bs, 4H): A_x,t + H_{t-1} W_hh^T
        u = lstm_cell_update(a, c, H)
        h_t = u.output * tanh(u.c)  # (bs, H)
        if w_hr is not None:
            h_t = linear(h_t, w_hr)  # (bs, H_out)
        return (h_t, u.c), _lstm_step_result(h_t, u)

    return xp, step


def fused_gru(layer_in: Tensor, w: Weights, *, batch: int, reverse: bool) -> tuple[Tensor, Step]:
    """GRU: A_x = X W_x^T + b_x for all rows (b_h stays inside R_t * (...)); per step the gates.

    No batched weight gradient here: autograd forms dW_hh step by step (``reverse`` unused).
    """
    xp = packed_linear(layer_in, PackedWeight(w["w_ih"], layer_in.size(0)), w["b_ih"])  # (N, 3H)
    b_hh, H = w["b_hh"], w["w_hh"].size(1)
    pw_hh = PackedWeight(w["w_hh"], batch)

    def step(xp_t, state, mask):
        h = state[0]
        hr = h if mask is None else h * mask
        gh = packed_linear(hr, pw_hh, b_hh)  # (bs, 3H)
        x_rz, x_n = xp_t.split([2 * H, H], dim=1)
        h_rz, h_n = gh.split([2 * H, H], dim=1)
        r_t, z_t = torch.sigmoid(x_rz + h_rz).chunk(2, dim=1)  # reset, update gates at once
        n_t = tanh(torch.addcmul(x_n, r_t, h_n))  # candidate
        h = torch.addcmul(n_t, z_t, h - n_t)  # z * h + (1 - z) * n
        return (h,), GRUStep(h, reset=r_t, update=z_t, candidate=n_t)

    return xp, step


def fused_layernorm_lstm(layer_in: Tensor, w: Weights, eps: float, *, batch: int, reverse: bool) -> tuple[Tensor, Step]:
    """LayerNorm-LSTM: LN(X W_x; g_x) + b for all rows at once, rows i, f, o, g (the norm is
    over all 4H features, so the order does not change it); per step LN(H_{t-1} W_h; g_h),
    the gates and H_t = O_t tanh(LN(C_t)). Plain autograd, no batched weight gradient."""
    H = w["w_hh"].size(1)
    G = 4 * H
    perm = ifog(H, layer_in.device)
    b = None if w["b"] is None else w["b"][perm]
    xw = packed_linear(layer_in, PackedWeight(w["w_ih"][perm], layer_in.size(0)))  # (N, 4H)
    xp = F.layer_norm(xw, (G,), w["g_ih"][perm], b, eps)  # b rides in as the norm's shift
    pw_hh, g_hh = PackedWeight(w["w_hh"][perm], batch), w["g_hh"][perm]  # (4H, H), (4H,)
    g_c, b_c = w["g_c"], w["b_c"]

    def step(xp_t, state, mask):
        h, c = state
        a = xp_t + F.layer_norm(packed_linear(h if mask is None else h * mask, pw_hh), (G,), g_hh, None, eps)
        u = lstm_cell_update(a, c, H)  # a (bs, 4H)
        h_t = u.output * tanh(F.layer_norm(u.c, (H,), g_c, b_c, eps))  # (bs, H)
        return (h_t, u.c), _lstm_step_result(h_t, u)

    return xp, step

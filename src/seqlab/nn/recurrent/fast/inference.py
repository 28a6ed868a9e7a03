"""The LSTMs' inference steps: the fused step without autograd, on oneDNN (CPU, float32).

What inference changes: nothing is kept for a backward, so each step can do all of its work on
data that is still in cache. Rather than projecting every step's input up front (a (T*B, 4H)
block read back from main memory at every step, which on the 2-core measuring machine cost
more than it saved, docs/benchmarks.md), a step multiplies its own raw input rows.

Both tanh come from the gates' sigmoid: tanh(a) = 1 - 2 sigmoid(-2a), with the candidate's rows
of W and b (or the norms' gains and shifts) scaled by -2, which is exact in floating point.
The cell update and the output are then one fused multiply-add each:
c_t = f c + i - 2 i s_g and h_t = o - 2 o s_c. torch's gate order i, f, g, o is kept (the
sigmoid covers all four blocks, so no reordering copy of the weights).

Each builder returns a ``loop.InferenceStep``: (x_t, state, mask, out) -> ((h_t, c_t), None),
writing h_t into ``out``, the step's rows of the layer's output block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..loop import InferenceStep, Weights
from ..torch_internals import onednn_linear, onednn_pack
from .ops import linear


def candidate_times_minus_2_(t: Tensor, H: int) -> Tensor:
    """t (4H, ...) in torch's i, f, g, o block order, its candidate block g multiplied by -2 in
    place (t must be a fresh copy): the inference steps then get tanh(a_g) = 1 - 2 sigmoid(-2 a_g)
    from the same sigmoid as the gates."""
    t[2 * H : 3 * H] *= -2
    return t


def lstm_inference_step(w: Weights, batch: int) -> InferenceStep:
    """One GEMM per step over [X_t, H_{t-1}] with [W_ih, W_hh] (the lecture's X_t W_x + H_{t-1} W_h
    + b as one product) and the gate sigmoid applied inside the GEMM (oneDNN's post-op)."""
    H = w["w_ih"].size(0) // 4
    # The candidate's rows times -2, so that s_g = sigmoid(-2 a_g), tanh(a_g) = 1 - 2 s_g.
    weight = candidate_times_minus_2_(torch.cat([w["w_ih"], w["w_hh"]], dim=1), H)  # (4H, H_in + H_out)
    bias = None if w["b_ih"] is None else candidate_times_minus_2_(w["b_ih"] + w["b_hh"], H)  # (4H,)
    packed = onednn_pack(weight, batch)
    w_hr = w["w_hr"]

    def step(x_t, state, mask, out):
        h, c = state
        xh = torch.cat([x_t, h if mask is None else h * mask], dim=1)  # (bs, H_in + H_out)
        s = onednn_linear(xh, packed, bias, "sigmoid")  # (bs, 4H)
        i_t, f_t, s_g, o_t = s.chunk(4, dim=1)  # input, forget gates; sigmoid(-2 a_g); output gate
        c_t = torch.addcmul(torch.addcmul(i_t, f_t, c), i_t, s_g, value=-2)  # f c + i tanh(a_g)
        s_c = torch.sigmoid(c_t * -2)
        if w_hr is None:
            h_t = torch.addcmul(o_t, o_t, s_c, value=-2, out=out)  # o tanh(c_t), (bs, H)
        else:
            h_t = out.copy_(linear(torch.addcmul(o_t, o_t, s_c, value=-2), w_hr))  # (bs, H_out)
        return (h_t, c_t), None

    return step


def layernorm_lstm_inference_step(w: Weights, eps: float, batch: int) -> InferenceStep:
    """Two GEMMs per step, X_t W_x and H_{t-1} W_h (the norms need the two products apart).

    The -2 rides on the norms' gains and shifts (LN(a; -2g, -2b) = -2 LN(a; g, b)), so
        S = sigmoid(LN(X_t W_x; g_x') + LN(H_{t-1} W_h; g_h') + b')   (bs, 4H): i, f, s_g, o
        C_t = f C + i - 2 i s_g                         = f C + i tanh(a_g)
        H_t = o - 2 o sigmoid(LN(C_t; -2 g_c, -2 b_c))  = o tanh(LN(C_t))
    """
    H = w["w_hh"].size(1)
    G = 4 * H
    # The norms do not care about gate order, so the weights are packed as they are.
    w_x = onednn_pack(w["w_ih"].detach().contiguous(), batch)  # (4H, H_in)
    w_h = onednn_pack(w["w_hh"].detach().contiguous(), batch)  # (4H, H)
    scaled = lambda v: candidate_times_minus_2_(v.clone(), H)  # noqa: E731 - a copy, (4H,)
    g_x, g_h = scaled(w["g_ih"]), scaled(w["g_hh"])
    b = None if w["b"] is None else scaled(w["b"])  # rides in as LN(X W_x)'s shift
    g_c = w["g_c"] * -2  # (H,)
    b_c = None if w["b_c"] is None else w["b_c"] * -2

    def step(x_t, state, mask, out):
        h, c = state
        xw = onednn_linear(x_t, w_x)  # (bs, 4H)
        hw = onednn_linear(h if mask is None else h * mask, w_h)
        s = F.layer_norm(xw, (G,), g_x, b, eps)
        s = s.add_(F.layer_norm(hw, (G,), g_h, None, eps)).sigmoid_()  # (bs, 4H)
        i_t, f_t, s_g, o_t = s.chunk(4, dim=1)  # input, forget gates; sigmoid(-2 a_g); output gate
        c_t = torch.addcmul(torch.addcmul(i_t, f_t, c), i_t, s_g, value=-2)  # f c + i tanh(a_g)
        s_c = F.layer_norm(c_t, (H,), g_c, b_c, eps).sigmoid_()  # sigmoid(-2 LN(c_t))
        h_t = torch.addcmul(o_t, o_t, s_c, value=-2, out=out)  # o tanh(LN(c_t)), (bs, H)
        return (h_t, c_t), None

    return step

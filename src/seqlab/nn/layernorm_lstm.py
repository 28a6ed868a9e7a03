"""Layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization", section 3.1).

torch has no such layer; it runs on seqlab's own recurrence (``impl="reference"`` step by
step, ``"fused"``/``"fused_own"`` with the input projections and their normalisation done for
all steps at once, or, without autograd on the CPU, a step that does all its work in cache:
``LayerNormLSTM._inference_step``). Same interface as :class:`seqlab.nn.LSTM` minus ``proj_size``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import _linear, _PackedWeight, linear, tanh
from .recurrent import (LSTMStep, Step, _candidate_times_minus_2_, _fused_lstm_gates, _ifog, _lstm_gates,
                        _recurrent_input, _RecurrentBase)


def layernorm_lstm_step(x_t: Tensor, h_prev: Tensor, c_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
                        b: Tensor | None, g_ih: Tensor, g_hh: Tensor, g_c: Tensor, b_c: Tensor | None,
                        eps: float = 1e-5, recurrent_mask: Tensor | None = None) -> LSTMStep:
    """One LayerNorm-LSTM step. LN(a; g, b) = g * (a - mean(a)) / sqrt(var(a) + eps) + b over features.

        A_t = LN(X_t W_x; g_x) + LN(H_{t-1} W_h; g_h) + b       (B, 4H), normalised separately
        F_t, I_t, C~_t, O_t = sigmoid, sigmoid, tanh, sigmoid of A_t's f, i, g, o blocks
        C_t = F_t * C_{t-1} + I_t * C~_t                         cell update
        H_t = O_t * tanh(LN(C_t; g_c, b_c))

    Normalising the two projections separately keeps the input's scale from swamping the
    recurrent term (and the reverse); the normalised cell keeps tanh out of saturation.
    Shapes: x_t (B, H_in), h_prev (B, H), c_prev (B, H) -> h (B, H), c (B, H).
    """
    G = w_ih.size(0)
    a_t = (F.layer_norm(F.linear(x_t, w_ih), (G,), g_ih, None, eps)
           + F.layer_norm(F.linear(_recurrent_input(h_prev, recurrent_mask), w_hh), (G,), g_hh, None, eps))
    if b is not None:
        a_t = a_t + b
    a_i, a_f, a_g, a_o = a_t.chunk(4, dim=1)  # 4 x (B, H), torch's block order
    f_t = torch.sigmoid(a_f)  # forget gate
    i_t = torch.sigmoid(a_i)  # input gate
    g_t = torch.tanh(a_g)  # candidate
    c_t = f_t * c_prev + i_t * g_t  # cell update
    o_t = torch.sigmoid(a_o)  # output gate
    h_t = o_t * torch.tanh(F.layer_norm(c_t, (c_t.size(1),), g_c, b_c, eps))
    return LSTMStep(h_t, c_t, input=i_t, forget=f_t, candidate=g_t, output=o_t)


class LayerNormLSTM(_RecurrentBase):
    """An LSTM with layer normalisation inside the recurrence (equations in :func:`layernorm_lstm_step`).

    Args: input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device, dtype; keyword-only impl ("fused" = "fused_own", or
    "reference"), recurrent_dropout, eps. Shapes and return values as :class:`seqlab.nn.LSTM`.

    Parameters per layer k (suffix ``_reverse`` for the backward direction): weight_ih_lk (4H, H_in),
    weight_hh_lk (4H, H), bias_lk (4H), ln_ih_weight_lk (4H), ln_hh_weight_lk (4H),
    ln_cell_weight_lk (H), ln_cell_bias_lk (H). The two projection norms have gains only:
    their shifts would just add to bias_lk. Gains start at 1 and the cell-norm bias at 0.
    """

    _gate_chunks, _has_cell, _has_native = 4, True, False

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, impl: str = "fused", recurrent_dropout: float = 0.0,
                 eps: float = 1e-5) -> None:
        self.eps = eps
        super().__init__("LayerNormLSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, impl=impl, recurrent_dropout=recurrent_dropout)

    def _param_shapes(self, layer_input: int):
        G, H = 4 * self.hidden_size, self.hidden_size
        shapes = [("weight_ih_l{}{}", (G, layer_input)), ("weight_hh_l{}{}", (G, H))]
        if self.bias:
            shapes += [("bias_l{}{}", (G,))]
        shapes += [("ln_ih_weight_l{}{}", (G,)), ("ln_hh_weight_l{}{}", (G,)), ("ln_cell_weight_l{}{}", (H,))]
        if self.bias:
            shapes += [("ln_cell_bias_l{}{}", (H,))]
        return shapes

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith("ln_") and "_weight_" in name:
                nn.init.ones_(p)
            elif name.startswith("ln_cell_bias"):
                nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -stdv, stdv)

    def _weights(self, layer: int, suffix: str):
        get = lambda name: getattr(self, f"{name}_l{layer}{suffix}", None)  # noqa: E731
        return {"w_ih": get("weight_ih"), "w_hh": get("weight_hh"), "b": get("bias"),
                "g_ih": get("ln_ih_weight"), "g_hh": get("ln_hh_weight"),
                "g_c": get("ln_cell_weight"), "b_c": get("ln_cell_bias")}

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", eps={self.eps}" if self.eps != 1e-5 else "")

    def _reference_step(self, w) -> Step:
        def step(x_t, state, mask):
            s = layernorm_lstm_step(x_t, state[0], state[1], w["w_ih"], w["w_hh"], w["b"], w["g_ih"],
                                    w["g_hh"], w["g_c"], w["b_c"], self.eps, mask)
            return (s.h, s.c), s.gates()
        return step

    def _inference_step(self, w, batch: int) -> Step:
        """The fused step without autograd, on oneDNN (CPU, float32): the layer's raw input rows in.

        As :meth:`seqlab.nn.LSTM._inference_step`, each step does all its work on data still in
        cache instead of projecting and normalising every step's input up front (two (T*B, 4H)
        buffers, read back from main memory at every step). The two norms, of X_t W_x and of
        H_{t-1} W_h, need the two products apart, so two GEMMs per step rather than one.
        Both tanh come from sigmoids, tanh(a) = 1 - 2 sigmoid(-2a): the -2 rides on the norms'
        gains and shifts (exact in floating point, and LN(a; -2g, -2b) = -2 LN(a; g, b)), so
            S = sigmoid(LN(X_t W_x; g_x') + LN(H_{t-1} W_h; g_h') + b')   (bs, 4H): i, f, s_g, o
            C_t = f C + i - 2 i s_g                    = f C + i tanh(a_g)
            H_t = o - 2 o sigmoid(LN(C_t; -2 g_c, -2 b_c))  = o tanh(LN(C_t))
        """
        H, G, eps = self.hidden_size, 4 * self.hidden_size, self.eps
        # torch's gate order i, f, g, o kept (one sigmoid covers all four blocks, and the norms do
        # not care about order), so the weights are packed as they are; the candidate's gains
        # and shift x -2.
        w_x = torch.ops.mkldnn._reorder_linear_weight(w["w_ih"].detach().contiguous(), batch)  # (4H, H_in)
        w_h = torch.ops.mkldnn._reorder_linear_weight(w["w_hh"].detach().contiguous(), batch)  # (4H, H)
        scaled = lambda v: _candidate_times_minus_2_(v.clone(), H)  # noqa: E731 - a copy, (4H,)
        g_x, g_h = scaled(w["g_ih"]), scaled(w["g_hh"])
        b = None if w["b"] is None else scaled(w["b"])  # rides in as LN(X W_x)'s shift
        g_c = w["g_c"] * -2  # (H,)
        b_c = None if w["b_c"] is None else w["b_c"] * -2

        def step(x_t, state, mask, out):
            h, c = state
            xw = torch.ops.mkldnn._linear_pointwise(x_t, w_x, None, "none", [], "")  # (bs, 4H)
            hw = torch.ops.mkldnn._linear_pointwise(h if mask is None else h * mask, w_h, None, "none", [], "")
            s = F.layer_norm(xw, (G,), g_x, b, eps)
            s = s.add_(F.layer_norm(hw, (G,), g_h, None, eps)).sigmoid_()  # (bs, 4H)
            i_t, f_t, s_g, o_t = s.chunk(4, dim=1)  # input, forget gates; sigmoid(-2 a_g); output gate
            c_t = torch.addcmul(torch.addcmul(i_t, f_t, c), i_t, s_g, value=-2)  # f c + i tanh(a_g)
            s_c = F.layer_norm(c_t, (H,), g_c, b_c, eps).sigmoid_()  # sigmoid(-2 LN(c_t))
            h_t = torch.addcmul(o_t, o_t, s_c, value=-2, out=out)  # o tanh(LN(c_t)), (bs, H)
            return (h_t, c_t), None
        return step

    def _fused_inputs(self, layer_in, w):
        # Gate rows reordered i, f, o, g (see recurrent._ifog); the norm is over all 4H features
        # so the order does not change it.
        perm = _ifog(self.hidden_size, layer_in.device)
        G = w["w_ih"].size(0)
        b = None if w["b"] is None else w["b"][perm]
        # LN(X W_x; g_x) + b for every step at once (b rides in as the norm's shift).
        xw = _linear(layer_in, _PackedWeight(w["w_ih"][perm], layer_in.size(0)))  # (N, 4H)
        return F.layer_norm(xw, (G,), w["g_ih"][perm], b, self.eps)

    def _fused_step(self, w, record, batch):
        H, eps = self.hidden_size, self.eps
        perm = _ifog(H, w["w_hh"].device)
        pw_hh, g_hh = _PackedWeight(w["w_hh"][perm], batch), w["g_hh"][perm]  # (4H, H), (4H,)
        g_c, b_c, G = w["g_c"], w["b_c"], 4 * H

        def step(xp_t, state, mask):
            h, c = state
            a = xp_t + F.layer_norm(_linear(h if mask is None else h * mask, pw_hh), (G,), g_hh, None, eps)  # (bs, 4H)
            f_t, i_t, g_t, c_t, o_t = _fused_lstm_gates(a, c, H)
            h_t = o_t * tanh(F.layer_norm(c_t, (H,), g_c, b_c, eps))  # (bs, H)
            return (h_t, c_t), (_lstm_gates(f_t, i_t, g_t, c_t, o_t) if record else None)
        return step

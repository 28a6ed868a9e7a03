"""The lecture's equations: one time step of each recurrent cell, in plain PyTorch.

Each step function is the equations in its docstring and nothing else: ``F.linear``,
``torch.sigmoid``, ``torch.tanh`` (and ``F.layer_norm`` for the LayerNorm-LSTM). What
``impl="reference"`` runs is exactly these functions, one time step after another, and what
``impl="compiled"`` compiles (``compiled.py``, tested equal to the reference).

Conventions: row vectors as in the lecture, X_t (B, H_in) and H_{t-1} (B, H), B sequences of
the batch side by side. torch stores a weight as (out, in), so the lecture's X_t W_x is
``F.linear(x_t, w_ih)``; the gates' weights are stacked in one matrix in torch's block order
(LSTM: i, f, g, o; GRU: r, z, n), which is why a step first cuts the product into blocks.
``recurrent_mask`` (B, H) is variational dropout (Gal & Ghahramani 2016): one mask per sequence,
the same at every step, on H_{t-1} where it enters W_h.

The input's term: X_t W_x + b_x reads x_t only, not the state, so it can be computed for every
step at once, one matrix product over all T steps before the recurrence (as torch's and cuDNN's
kernels do). ``impl="compiled"`` does that: it calls :func:`input_term` (the LayerNorm-LSTM:
:func:`layernorm_input_term`) on the whole sequence and passes each step its row with
``projected=True``; a step given ``projected=False`` (the reference) calls the same function on x_t.

Gate recording: an LSTM or GRU step returns a NamedTuple holding the new state and each gate
by name; ``.gates()`` is the dict that ``forward(..., return_gates=True)`` stacks over time.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

Gates = dict[str, Tensor]  # one step's gates by name, each (B, H); stacked over time, (B, T, H)


def recurrent_input(h_prev: Tensor, recurrent_mask: Tensor | None) -> Tensor:
    """H_{t-1} as it enters W_h: times the per-sequence variational dropout mask, if any."""
    return h_prev if recurrent_mask is None else h_prev * recurrent_mask


def input_term(x: Tensor, w_ih: Tensor, b_ih: Tensor | None = None) -> Tensor:
    """X_t W_x + b_x, the part of a step that reads the input only: (..., H_in) -> (..., G), for one
    step (B, H_in) or all of them at once (T, B, H_in). G: H (RNN), 4H (LSTM), 3H (GRU)."""
    return F.linear(x, w_ih, b_ih)


def rnn_step(
    x_t: Tensor,
    h_prev: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
    recurrent_mask: Tensor | None = None,
    *,
    projected: bool = False,
) -> Tensor:
    """Vanilla (Elman) RNN, one step.

        H_t = act(X_t W_x + b_x + H_{t-1} W_h + b_h)        act = tanh or relu

    Shapes: x_t (B, H_in), h_prev (B, H) -> H_t (B, H); projected=True: x_t is already
    ``input_term(x_t, w_ih, b_ih)`` (B, H).
    """
    x_term = x_t if projected else input_term(x_t, w_ih, b_ih)  # X_t W_x + b_x (B, H)
    a_t = x_term + F.linear(recurrent_input(h_prev, recurrent_mask), w_hh, b_hh)  # (B, H)
    return torch.tanh(a_t) if nonlinearity == "tanh" else torch.relu(a_t)


class LSTMStep(NamedTuple):
    """One LSTM step: the new state (h, c) and the gates that made it, each (B, H) (h: (B, H_out))."""

    h: Tensor
    c: Tensor
    input: Tensor
    forget: Tensor
    candidate: Tensor
    output: Tensor

    def gates(self) -> Gates:
        """The recorded gates, in the lecture's order: forget, input, candidate, cell, output."""
        return {
            "forget": self.forget,
            "input": self.input,
            "candidate": self.candidate,
            "cell": self.c,
            "output": self.output,
        }


def lstm_step(
    x_t: Tensor,
    h_prev: Tensor,
    c_prev: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
    recurrent_mask: Tensor | None = None,
    *,
    projected: bool = False,
) -> LSTMStep:
    """LSTM, one step: the cell state is a conveyor belt that the gates write to and read from.

        F_t = sigmoid(X_t W_xf + H_{t-1} W_hf + b_f)        forget gate
        I_t = sigmoid(X_t W_xi + H_{t-1} W_hi + b_i)        input gate
        C~_t = tanh(X_t W_xc + H_{t-1} W_hc + b_c)          candidate
        C_t = F_t * C_{t-1} + I_t * C~_t                    cell update
        O_t = sigmoid(X_t W_xo + H_{t-1} W_ho + b_o)        output gate
        H_t = O_t * tanh(C_t)                               (then H_t W_hr if proj_size > 0)

    Shapes: x_t (B, H_in), h_prev (B, H_out), c_prev (B, H) -> h (B, H_out), c and gates (B, H);
    projected=True: x_t is already ``input_term(x_t, w_ih, b_ih)`` (B, 4H).
    """
    x_term = x_t if projected else input_term(x_t, w_ih, b_ih)  # X_t W_x + b_x (B, 4H)
    a_t = x_term + F.linear(recurrent_input(h_prev, recurrent_mask), w_hh, b_hh)  # (B, 4H)
    a_i, a_f, a_g, a_o = a_t.chunk(4, dim=1)  # 4 x (B, H), torch's block order in W
    f_t = torch.sigmoid(a_f)  # forget gate
    i_t = torch.sigmoid(a_i)  # input gate
    g_t = torch.tanh(a_g)  # candidate
    c_t = f_t * c_prev + i_t * g_t  # cell update
    o_t = torch.sigmoid(a_o)  # output gate
    h_t = o_t * torch.tanh(c_t)  # (B, H)
    if w_hr is not None:
        h_t = F.linear(h_t, w_hr)  # (B, H_out)
    return LSTMStep(h_t, c_t, input=i_t, forget=f_t, candidate=g_t, output=o_t)


class GRUStep(NamedTuple):
    """One GRU step: the new state h and the gates that made it, each (B, H)."""

    h: Tensor
    reset: Tensor
    update: Tensor
    candidate: Tensor

    def gates(self) -> Gates:
        """The recorded gates: reset, update, candidate."""
        return {"reset": self.reset, "update": self.update, "candidate": self.candidate}


def gru_step(
    x_t: Tensor,
    h_prev: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    recurrent_mask: Tensor | None = None,
    *,
    projected: bool = False,
) -> GRUStep:
    """GRU, one step: a reset and an update gate, no separate cell state.

        R_t = sigmoid(X_t W_xr + H_{t-1} W_hr + b_r)                 reset gate
        Z_t = sigmoid(X_t W_xz + H_{t-1} W_hz + b_z)                 update gate
        H~_t = tanh(X_t W_xh + b_xh + R_t * (H_{t-1} W_hh + b_hh))   candidate
        H_t = Z_t * H_{t-1} + (1 - Z_t) * H~_t

    torch's variant: the reset gate multiplies H_{t-1} W_hh + b_hh, after the matmul.
    Shapes: x_t (B, H_in), h_prev (B, H) -> h and gates (B, H); projected=True: x_t is already
    ``input_term(x_t, w_ih, b_ih)`` (B, 3H).
    """
    x_term = x_t if projected else input_term(x_t, w_ih, b_ih)  # X_t W_x + b_x (B, 3H)
    x_r, x_z, x_h = x_term.chunk(3, dim=1)  # 3 x (B, H), torch's block order in W
    h_r, h_z, h_h = F.linear(recurrent_input(h_prev, recurrent_mask), w_hh, b_hh).chunk(3, dim=1)
    r_t = torch.sigmoid(x_r + h_r)  # reset gate
    z_t = torch.sigmoid(x_z + h_z)  # update gate
    n_t = torch.tanh(x_h + r_t * h_h)  # candidate
    h_t = z_t * h_prev + (1 - z_t) * n_t
    return GRUStep(h_t, reset=r_t, update=z_t, candidate=n_t)


def layernorm_input_term(x: Tensor, w_ih: Tensor, g_ih: Tensor, eps: float = 1e-5) -> Tensor:
    """LN(X_t W_x; g_x), the LayerNorm-LSTM's input term: (..., H_in) -> (..., 4H), one step or all."""
    return F.layer_norm(F.linear(x, w_ih), (w_ih.size(0),), g_ih, None, eps)


def layernorm_lstm_step(
    x_t: Tensor,
    h_prev: Tensor,
    c_prev: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b: Tensor | None,
    g_ih: Tensor,
    g_hh: Tensor,
    g_c: Tensor,
    b_c: Tensor | None,
    eps: float = 1e-5,
    recurrent_mask: Tensor | None = None,
    *,
    projected: bool = False,
) -> LSTMStep:
    """LayerNorm-LSTM (Ba, Kiros & Hinton 2016, section 3.1), one step.

    LN(a; g, b) = g * (a - mean(a)) / sqrt(var(a) + eps) + b, over the features of each row.

        A_t = LN(X_t W_x; g_x) + LN(H_{t-1} W_h; g_h) + b       (B, 4H), normalised separately
        F_t, I_t, C~_t, O_t = sigmoid, sigmoid, tanh, sigmoid of A_t's f, i, g, o blocks
        C_t = F_t * C_{t-1} + I_t * C~_t                         cell update
        H_t = O_t * tanh(LN(C_t; g_c, b_c))

    Normalising the two projections separately keeps the input's scale from swamping the
    recurrent term (and the reverse); the normalised cell keeps tanh out of saturation.
    Shapes: x_t (B, H_in), h_prev (B, H), c_prev (B, H) -> h, c and gates (B, H); projected=True:
    x_t is already ``layernorm_input_term(x_t, w_ih, g_ih, eps)`` (B, 4H).
    """
    G = w_ih.size(0)  # 4H
    x_term = x_t if projected else layernorm_input_term(x_t, w_ih, g_ih, eps)  # LN(X_t W_x; g_x) (B, 4H)
    a_t = x_term + F.layer_norm(F.linear(recurrent_input(h_prev, recurrent_mask), w_hh), (G,), g_hh, None, eps)
    if b is not None:
        a_t = a_t + b  # (B, 4H)
    a_i, a_f, a_g, a_o = a_t.chunk(4, dim=1)  # 4 x (B, H), torch's block order in W
    f_t = torch.sigmoid(a_f)  # forget gate
    i_t = torch.sigmoid(a_i)  # input gate
    g_t = torch.tanh(a_g)  # candidate
    c_t = f_t * c_prev + i_t * g_t  # cell update
    o_t = torch.sigmoid(a_o)  # output gate
    h_t = o_t * torch.tanh(F.layer_norm(c_t, (c_t.size(1),), g_c, b_c, eps))  # (B, H)
    return LSTMStep(h_t, c_t, input=i_t, forget=f_t, candidate=g_t, output=o_t)

"""Layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization", section 3.1).

torch has no such layer; it runs :func:`layernorm_lstm_step`, compiled (``impl="compiled"`` or
"auto") or one step at a time (``impl="reference"``, and "fused", which has no torch kernel to
call here).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor, nn

from .base import _RecurrentBase
from .equations import layernorm_input_term, layernorm_lstm_step
from .layers import _EXTRA_INPUTS, _INPUT, _OUTPUT, _WHERE
from .loop import Step, Weights


class LayerNormLSTM(_RecurrentBase):
    __doc__ = f"""An LSTM with layer normalisation inside the recurrence (equations in :func:`layernorm_lstm_step`).

    Each layer computes, at every step t, with LN(a; g, b) a layer norm over the features:

        A_t = LN(X_t W_x; g_x) + LN(H_{{t-1}} W_h; g_h) + b        (N, 4 H_cell), blocks i, f, g, o
        F_t, I_t, C~_t, O_t = sigmoid, sigmoid, tanh, sigmoid of A_t's f, i, g, o blocks
        C_t = F_t * C_{{t-1}} + I_t * C~_t                          cell update
        H_t = O_t * tanh(LN(C_t; g_c, b_c))

    Args:
        input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
        bidirectional=False, device=None, dtype=None: as torch.nn.LSTM (no proj_size).
        impl (keyword-only): "fused" (default; torch has no kernel for this layer) = "reference":
            the step function's equations, one step at a time; "compiled" or "auto": compiled.
        recurrent_dropout (keyword-only): variational dropout on H_{{t-1}}, one mask per sequence.
        eps (keyword-only): the layer norms' epsilon. Default: 1e-5

    Inputs: input, (h_0, c_0)
        {_INPUT}
        * **h_0**, **c_0**: each (D * num_layers, N, H_cell); zeros if (h_0, c_0) is not given.
        {_EXTRA_INPUTS}

    Outputs: output, (h_n, c_n), and gates with ``return_gates=True``: as :class:`seqlab.nn.LSTM`
        {_OUTPUT}
        * **h_n**, **c_n**: each (D * num_layers, N, H_cell), every layer's and direction's final H_t, C_t.

    {_WHERE}

    Parameters per layer k (suffix ``_reverse`` for the backward direction): weight_ih_l{{k}}
    (4 H_cell, H_in) for k = 0, (4 H_cell, D * H_cell) above; weight_hh_l{{k}} (4 H_cell, H_cell);
    bias_l{{k}} (4 H_cell); ln_ih_weight_l{{k}}, ln_hh_weight_l{{k}} (4 H_cell); ln_cell_weight_l{{k}},
    ln_cell_bias_l{{k}} (H_cell). The two projection norms have gains only: their shifts would
    just add to bias_l{{k}}. Gains start at 1, the cell-norm bias at 0, the rest U(-1/sqrt(H_cell),
    1/sqrt(H_cell)).
    """

    _gate_chunks, _has_cell, _has_native = 4, True, False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        impl: str = "fused",
        recurrent_dropout: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        self.eps = eps
        super().__init__(
            "LayerNormLSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
            impl=impl,
            recurrent_dropout=recurrent_dropout,
        )

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

    # One bias b (no b_ih/b_hh pair) and the gains g and bias b_c of the three layer norms.
    _weight_names = {
        "w_ih": "weight_ih",
        "w_hh": "weight_hh",
        "b": "bias",
        "g_ih": "ln_ih_weight",
        "g_hh": "ln_hh_weight",
        "g_c": "ln_cell_weight",
        "b_c": "ln_cell_bias",
    }

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", eps={self.eps}" if self.eps != 1e-5 else "")

    def _input_term(self, w: Weights) -> Callable[[Tensor], Tensor]:
        return lambda x: layernorm_input_term(x, w["w_ih"], w["g_ih"], self.eps)

    def _reference_step(self, w: Weights, projected: bool = False) -> Step:
        def step(x_t, state, mask):
            s = layernorm_lstm_step(
                x_t,
                state[0],
                state[1],
                w["w_ih"],
                w["w_hh"],
                w["b"],
                w["g_ih"],
                w["g_hh"],
                w["g_c"],
                w["b_c"],
                self.eps,
                mask,
                projected=projected,
            )
            return s.h, (s.h, s.c), s

        return step

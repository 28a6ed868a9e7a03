"""RNN, LSTM and GRU layers with torch.nn's interface: their parameters, docstrings and steps.

Everything they share (inputs and outputs, packing, stacking, state) is ``base._RecurrentBase``;
what runs is chosen by ``routes.select_route``; each layer here supplies its equation from
``equations.py`` as its step.
"""

from __future__ import annotations

from torch import Tensor

from .base import _RecurrentBase
from .equations import gru_step, lstm_step, rnn_step
from .loop import Step, Weights

# Shape-contract pieces every layer's docstring shares (help(seqlab.nn.LSTM) shows them).
_IMPL_ARGS = """impl (keyword-only): "fused" (default): torch's own kernel where torch has the
            configuration (else the reference); "compiled": the step function's equations compiled
            with torch.compile; "auto": torch's kernel where torch has the configuration, else
            compiled; "reference": the equations, one step at a time (see :func:`select_route`).
        recurrent_dropout (keyword-only): variational dropout on H_{t-1} where it enters W_h, one
            mask per sequence and layer, the same at every step (Gal & Ghahramani 2016). Default: 0"""
_INPUT = """* **input**: (L, N, H_in); (N, L, H_in) with ``batch_first=True``; (L, H_in) unbatched;
          or a ``PackedSequence``."""
_EXTRA_INPUTS = """* **lengths** (keyword-only): (N,), the valid steps of each sequence of a padded batch;
          output is zero past each length and the final state is taken at the last valid step.
        * **return_gates** (keyword-only): also return every gate's activations (below)."""
_OUTPUT = """* **output**: (L, N, D * H_out); (N, L, D * H_out) with ``batch_first=True``;
          (L, D * H_out) unbatched; packed like the input. The last layer's H_t at every step,
          the two directions' concatenated."""
_WHERE = """where N = batch size, L = sequence length, D = 2 if bidirectional else 1, H_in = input_size,
    H_cell = hidden_size, H_out = proj_size if proj_size > 0 else hidden_size. Unbatched input
    takes and gives states without the N axis. The state's N axis is not affected by
    ``batch_first``."""
_PARAMETERS = """weight_ih_l{k}: (G * H_cell, H_in) for k = 0, (G * H_cell, D * H_out) above;
        weight_hh_l{k}: (G * H_cell, H_out); bias_ih_l{k}, bias_hh_l{k}: (G * H_cell); suffix
        ``_reverse`` for the backward direction. Initialised U(-1/sqrt(H_cell), 1/sqrt(H_cell)), as torch's."""


class RNN(_RecurrentBase):
    __doc__ = f"""Elman RNN over a sequence (equations in :func:`rnn_step`); torch.nn.RNN's interface.

    Each layer computes, at every step t, H_t = act(X_t W_x + b_x + H_{{t-1}} W_h + b_h), act tanh or relu.

    Args:
        input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, batch_first=False,
        dropout=0.0, bidirectional=False, device=None, dtype=None: as torch.nn.RNN.
        {_IMPL_ARGS}

    Inputs: input, h_0
        {_INPUT}
        * **h_0**: (D * num_layers, N, H_out); zeros if not given.
        {_EXTRA_INPUTS} (an RNN has none: ValueError)

    Outputs: output, h_n
        {_OUTPUT}
        * **h_n**: (D * num_layers, N, H_out), every layer's and direction's final H_t.

    {_WHERE}

    Parameters of layer k (G = 1):
        {_PARAMETERS}
    """

    _gate_chunks, _has_cell = 1, False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        impl: str = "fused",
        recurrent_dropout: float = 0.0,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__(
            "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU",
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

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")

    def _reference_step(self, w: Weights, projected: bool = False) -> Step:
        def step(x_t, state, mask):
            h_t = rnn_step(
                x_t, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], self.nonlinearity, mask, projected=projected
            )
            return h_t, (h_t,), None

        return step


class LSTM(_RecurrentBase):
    __doc__ = f"""Long short-term memory over a sequence (equations in :func:`lstm_step`); torch.nn.LSTM's interface.

    Each layer computes, at every step t (row vectors; W's gate blocks in torch's order i, f, g, o):

        F_t = sigmoid(X_t W_xf + H_{{t-1}} W_hf + b_f)       forget gate
        I_t = sigmoid(X_t W_xi + H_{{t-1}} W_hi + b_i)       input gate
        C~_t = tanh(X_t W_xc + H_{{t-1}} W_hc + b_c)         candidate
        C_t = F_t * C_{{t-1}} + I_t * C~_t                   cell update
        O_t = sigmoid(X_t W_xo + H_{{t-1}} W_ho + b_o)       output gate
        H_t = O_t * tanh(C_t)                              (then H_t W_hr if proj_size > 0)

    Args:
        input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
        bidirectional=False, proj_size=0, device=None, dtype=None: as torch.nn.LSTM.
        {_IMPL_ARGS}

    Inputs: input, (h_0, c_0)
        {_INPUT}
        * **h_0**: (D * num_layers, N, H_out); zeros if (h_0, c_0) is not given.
        * **c_0**: (D * num_layers, N, H_cell); zeros if (h_0, c_0) is not given.
        {_EXTRA_INPUTS}

    Outputs: output, (h_n, c_n), and gates with ``return_gates=True``
        {_OUTPUT}
        * **h_n**: (D * num_layers, N, H_out), every layer's and direction's final H_t.
        * **c_n**: (D * num_layers, N, H_cell), every layer's and direction's final C_t.
        * **gates**: {{"l0": {{"forget": (N, L, H_cell), ...}}, "l0_reverse": ..., "l1": ...}} with
          forget, input, candidate, cell, output; batch-first always; zero past a sequence's end.

    {_WHERE}

    Parameters of layer k (G = 4, gate blocks i, f, g, o; with proj_size > 0 also weight_hr_l{{k}}: (H_out, H_cell)):
        {_PARAMETERS}
    """

    _gate_chunks, _has_cell = 4, True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        impl: str = "fused",
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
            impl=impl,
            recurrent_dropout=recurrent_dropout,
        )

    def _reference_step(self, w: Weights, projected: bool = False) -> Step:
        def step(x_t, state, mask):
            s = lstm_step(
                x_t,
                state[0],
                state[1],
                w["w_ih"],
                w["w_hh"],
                w["b_ih"],
                w["b_hh"],
                w["w_hr"],
                mask,
                projected=projected,
            )
            return s.h, (s.h, s.c), s

        return step


class GRU(_RecurrentBase):
    __doc__ = f"""Gated recurrent unit over a sequence (equations in :func:`gru_step`); torch.nn.GRU's interface.

    Each layer computes, at every step t (row vectors; W's gate blocks in torch's order r, z, n):

        R_t = sigmoid(X_t W_xr + H_{{t-1}} W_hr + b_r)                 reset gate
        Z_t = sigmoid(X_t W_xz + H_{{t-1}} W_hz + b_z)                 update gate
        H~_t = tanh(X_t W_xh + b_xh + R_t * (H_{{t-1}} W_hh + b_hh))   candidate
        H_t = Z_t * H_{{t-1}} + (1 - Z_t) * H~_t

    Args:
        input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
        bidirectional=False, device=None, dtype=None: as torch.nn.GRU.
        {_IMPL_ARGS}

    Inputs: input, h_0
        {_INPUT}
        * **h_0**: (D * num_layers, N, H_out); zeros if not given.
        {_EXTRA_INPUTS}

    Outputs: output, h_n, and gates with ``return_gates=True``
        {_OUTPUT}
        * **h_n**: (D * num_layers, N, H_out), every layer's and direction's final H_t.
        * **gates**: {{"l0": {{"reset": (N, L, H_cell), ...}}, "l0_reverse": ..., "l1": ...}} with
          reset, update, candidate; batch-first always; zero past a sequence's end.

    {_WHERE}

    Parameters of layer k (G = 3, gate blocks r, z, n):
        {_PARAMETERS}
    """

    _gate_chunks, _has_cell = 3, False

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
    ) -> None:
        super().__init__(
            "GRU",
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

    def _reference_step(self, w: Weights, projected: bool = False) -> Step:
        def step(x_t, state, mask):
            s = gru_step(x_t, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], mask, projected=projected)
            return s.h, (s.h,), s

        return step


def detach_state(state):
    """Cut the graph behind a recurrent state for truncated BPTT: a tensor, an (h, c) tuple, or None."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"detach_state expects a tensor or a tuple of tensors, got {type(state).__name__}")

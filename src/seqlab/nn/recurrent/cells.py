"""RNNCell, LSTMCell and GRUCell: one time step with torch.nn's cell interface.

``impl="reference"`` runs the step function of ``equations.py``; "fused", "auto" and "compiled"
call torch's cell kernel (one step alone leaves a compiler nothing to fuse across steps).
Parameter names, shapes and initialisation are torch's, so ``load_state_dict`` works both ways.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...torch_internals import native_cell
from .equations import gru_step, lstm_step, rnn_step
from .routes import check_impl


class _CellBase(nn.Module):
    """Parameters and input checks shared by RNNCell, LSTMCell and GRUCell (torch's layout)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        num_chunks: int,
        device=None,
        dtype=None,
        *,
        impl: str = "fused",
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.impl = check_impl(impl)
        self.weight_ih = nn.Parameter(torch.empty(num_chunks * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(num_chunks * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(num_chunks * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(num_chunks * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s + (f", impl={self.impl!r}" if self.impl != "fused" else "")

    def _prepare(self, input: Tensor, states: tuple[Tensor | None, ...], names: tuple[str, ...]):
        """Check shapes; return the batched input, batched states and whether input was batched."""
        cls = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{cls}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if input.size(-1) != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {input.size(-1)}"
            )
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, H_in)
        out = []
        for name, s in zip(names, states):
            if s is None:
                s = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)
            else:
                if s.dim() != input.dim():
                    raise ValueError(
                        f"{cls}: Expected {name} to be {input.dim()}D like the input, got {s.dim()}D instead"
                    )
                s = s if batched else s.unsqueeze(0)
                expected = (x.size(0), self.hidden_size)
                if tuple(s.shape) != expected:
                    raise RuntimeError(f"Expected {name} size {expected}, got {list(s.shape)}")
            out.append(s)
        return x, out, batched


class RNNCell(_CellBase):
    """One Elman RNN step, h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu
    (:func:`rnn_step`); torch.nn.RNNCell's interface.

    Args: input_size, hidden_size, bias=True, nonlinearity='tanh', device, dtype; keyword-only
    impl ("fused", "auto", "compiled": torch's cell kernel; "reference": :func:`rnn_step`).

    Inputs: input, hidden
        * **input**: (N, H_in) or (H_in) unbatched.
        * **hidden**: (N, H_out) or (H_out); zeros if not given.

    Outputs: h'
        * **h'**: (N, H_out) or (H_out), the next hidden state.

    where N = batch size, H_in = input_size, H_out = hidden_size.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
        *,
        impl: str = "fused",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, 1, device, dtype, impl=impl)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, (hx,), ("hidden",))
        if self.impl == "reference":
            h_t = rnn_step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity)
        else:
            mode = "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"
            h_t = native_cell(mode, x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h_t if batched else h_t.squeeze(0)


class LSTMCell(_CellBase):
    """One LSTM step (equations in :func:`lstm_step`); torch.nn.LSTMCell's interface.

    Args: input_size, hidden_size, bias=True, device, dtype; keyword-only impl ("fused",
    "auto", "compiled": torch's cell kernel; "reference": :func:`lstm_step`).

    Inputs: input, (h_0, c_0)
        * **input**: (N, H_in) or (H_in) unbatched.
        * **h_0**, **c_0**: each (N, H) or (H); zeros if (h_0, c_0) is not given.

    Outputs: (h_1, c_1)
        * **h_1**, **c_1**: each (N, H) or (H), the next hidden and cell state.

    where N = batch size, H_in = input_size, H = hidden_size.
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *, impl: str = "fused"
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype, impl=impl)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h0, c0 = (None, None) if hx is None else hx
        x, (h, c), batched = self._prepare(input, (h0, c0), ("hx[0]", "hx[1]"))
        if self.impl == "reference":
            step = lstm_step(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
            h_t, c_t = step.h, step.c
        else:
            h_t, c_t = native_cell("LSTM", x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h_t, c_t) if batched else (h_t.squeeze(0), c_t.squeeze(0))


class GRUCell(_CellBase):
    """One GRU step (equations in :func:`gru_step`); torch.nn.GRUCell's interface.

    Args: input_size, hidden_size, bias=True, device, dtype; keyword-only impl ("fused",
    "auto", "compiled": torch's cell kernel; "reference": :func:`gru_step`).

    Inputs: input, hidden
        * **input**: (N, H_in) or (H_in) unbatched.
        * **hidden**: (N, H) or (H); zeros if not given.

    Outputs: h'
        * **h'**: (N, H) or (H), the next hidden state.

    where N = batch size, H_in = input_size, H = hidden_size.
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *, impl: str = "fused"
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype, impl=impl)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, (hx,), ("hidden",))
        if self.impl == "reference":
            h_t = gru_step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh).h
        else:
            h_t = native_cell("GRU", x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h_t if batched else h_t.squeeze(0)

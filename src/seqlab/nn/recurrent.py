"""RNN, LSTM and GRU written from the lecture's equations, drop-in for ``torch.nn``.

Shapes (torch's symbols): N batch, L sequence length, D = 2 if bidirectional else 1,
H_in = input_size, H_cell = hidden_size, H_out = proj_size or hidden_size.

- input ``(L, N, H_in)``, ``(N, L, H_in)`` with ``batch_first=True``, ``(L, H_in)`` unbatched,
  or a ``PackedSequence``.
- state ``(num_layers * D, N, H_out)`` (``(num_layers * D, H_out)`` unbatched); the LSTM's
  cell state is ``(num_layers * D, N, H_cell)``.
- output ``(L, N, D * H_out)`` (``(N, L, D * H_out)`` with ``batch_first``), packed like the input.

Parameter names, shapes, gate order (LSTM: i, f, g, o; GRU: r, z, n) and initialisation
U(-1/sqrt(H), 1/sqrt(H)) are torch's, so ``load_state_dict`` works in both directions.

Three implementations, chosen by ``impl``:

- ``"reference"``: one time step at a time through the step functions below
  (:func:`rnn_step`, :func:`lstm_step`, :func:`gru_step`), whose bodies are the equations in
  plain PyTorch (``F.linear``, ``torch.sigmoid``, ``torch.tanh``): an independent check of the
  fast paths, not a fast path itself.
- ``"fused_own"``: seqlab's own fused recurrence. The input projections of every time step
  are one matrix multiply ``X W_ih^T + b`` over all (step, sequence) rows; the loop then only
  does ``H_{t-1} W_hh^T`` and the pointwise gates. On CPU its multiplies go through oneDNN
  with the weights packed once per call (``seqlab/nn/kernels.py``), and the LSTM's and RNN's
  backward forms ``dW_hh`` in one GEMM over all steps (see ``_BatchedWeightGrad``). Without
  autograd the LSTM runs an inference step instead (``LSTM._inference_step``: one GEMM per
  step over [x_t, h_{t-1}] with the gate sigmoid fused into it). LayerNormLSTM's "fused" is
  this path. Select it explicitly to benchmark it.
- ``"fused"`` (default): dispatches to torch's native kernel (``torch._VF.lstm`` etc., fed
  this module's own parameters) when the configuration is one torch has; it falls back to
  ``"fused_own"`` for what torch lacks: variational dropout while training and gate recording.

Double backward (``create_graph=True`` and then differentiating the gradient, e.g. a gradient
penalty) is not supported on the LSTM's, GRU's and RNN's own fused loop: ``"fused_own"``, and
``"fused"`` where it falls back (recurrent dropout while training, gate recording). Their
hand-written backwards are first-order only; differentiating through them raises an error that
says so. torch.nn.LSTM on CPU does support it, and so do ``"reference"``, ``"fused"`` on torch's
kernel, and LayerNormLSTM (whose loop is plain autograd over seqlab's oneDNN ``linear``).

Beyond torch: ``recurrent_dropout`` (variational dropout, Gal & Ghahramani 2016: one mask per
sequence and layer on h_{t-1} where it enters W_hh, the same mask at every step),
``forward(..., lengths=)`` for padded variable-length batches, and
``forward(..., return_gates=True)`` which also returns every gate's activations per step.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .kernels import (_PackedWeight, _autocast_enabled, _linear, _mm_at_b, _onednn_usable,
                      _plain_autograd_only, linear, tanh)

IMPLS = ("fused", "fused_own", "reference")

State = tuple[Tensor, ...]  # (h,) or (h, c); each (B, *)
Gates = dict[str, Tensor]


# --------------------------------------------------------------------------------------------
# The equations: one time step of each cell, in plain PyTorch (F.linear, torch.sigmoid,
# torch.tanh). Row-vector convention as in the lecture, X_t (B, H_in), H_{t-1} (B, H); torch
# stores W as (out, in), so "X W_x" is F.linear(X, W).
# --------------------------------------------------------------------------------------------

def _recurrent_input(h_prev: Tensor, recurrent_mask: Tensor | None) -> Tensor:
    """h_{t-1} as it enters W_hh: times the per-sequence variational dropout mask, if any."""
    return h_prev if recurrent_mask is None else h_prev * recurrent_mask


def rnn_step(x_t: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None, nonlinearity: str = "tanh",
             recurrent_mask: Tensor | None = None) -> Tensor:
    """Vanilla RNN: H_t = act(X_t W_x + H_{t-1} W_h + b).   (B, H_in), (B, H) -> (B, H)."""
    a_t = F.linear(x_t, w_ih, b_ih) + F.linear(_recurrent_input(h_prev, recurrent_mask), w_hh, b_hh)
    return torch.tanh(a_t) if nonlinearity == "tanh" else torch.relu(a_t)


class LSTMStep(NamedTuple):
    """One LSTM step: the new state (h, c) and the gates that made it, each (B, H)."""

    h: Tensor
    c: Tensor
    input: Tensor
    forget: Tensor
    candidate: Tensor
    output: Tensor

    def gates(self) -> Gates:
        return {"forget": self.forget, "input": self.input, "candidate": self.candidate,
                "cell": self.c, "output": self.output}


def lstm_step(x_t: Tensor, h_prev: Tensor, c_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None = None, b_hh: Tensor | None = None, w_hr: Tensor | None = None,
              recurrent_mask: Tensor | None = None) -> LSTMStep:
    """LSTM: the cell state is a conveyor belt that the gates write to and read from.

        F_t = sigmoid(X_t W_xf + H_{t-1} W_hf + b_f)        forget gate
        I_t = sigmoid(X_t W_xi + H_{t-1} W_hi + b_i)        input gate
        C~_t = tanh(X_t W_xc + H_{t-1} W_hc + b_c)          candidate
        C_t = F_t * C_{t-1} + I_t * C~_t                    cell update
        O_t = sigmoid(X_t W_xo + H_{t-1} W_ho + b_o)        output gate
        H_t = O_t * tanh(C_t)        (then H_t W_hr if proj_size > 0)

    The four gate blocks are stacked in W in torch's order (i, f, g, o).
    Shapes: x_t (B, H_in), h_prev (B, H_out), c_prev (B, H) -> h (B, H_out), c (B, H).
    """
    a_t = F.linear(x_t, w_ih, b_ih) + F.linear(_recurrent_input(h_prev, recurrent_mask), w_hh, b_hh)  # (B, 4H)
    a_i, a_f, a_g, a_o = a_t.chunk(4, dim=1)  # 4 x (B, H), torch's block order
    f_t = torch.sigmoid(a_f)  # forget gate
    i_t = torch.sigmoid(a_i)  # input gate
    g_t = torch.tanh(a_g)  # candidate
    c_t = f_t * c_prev + i_t * g_t  # cell update
    o_t = torch.sigmoid(a_o)  # output gate
    h_t = o_t * torch.tanh(c_t)
    if w_hr is not None:
        h_t = F.linear(h_t, w_hr)  # (B, H_out)
    return LSTMStep(h_t, c_t, input=i_t, forget=f_t, candidate=g_t, output=o_t)


class GRUStep(NamedTuple):
    """One GRU step: the new state h and its gates, each (B, H)."""

    h: Tensor
    reset: Tensor
    update: Tensor
    candidate: Tensor

    def gates(self) -> Gates:
        return {"reset": self.reset, "update": self.update, "candidate": self.candidate}


def gru_step(x_t: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None, recurrent_mask: Tensor | None = None) -> GRUStep:
    """GRU: a reset and an update gate, no separate cell state.

        R_t = sigmoid(X_t W_xr + H_{t-1} W_hr + b_r)                 reset gate
        Z_t = sigmoid(X_t W_xz + H_{t-1} W_hz + b_z)                 update gate
        H~_t = tanh(X_t W_xh + b_xh + R_t * (H_{t-1} W_hh + b_hh))   candidate
        H_t = Z_t * H_{t-1} + (1 - Z_t) * H~_t

    torch's variant: the reset gate multiplies H_{t-1} W_hh + b_hh, after the matmul.
    Shapes: x_t (B, H_in), h_prev (B, H) -> h (B, H).
    """
    x_r, x_z, x_h = F.linear(x_t, w_ih, b_ih).chunk(3, dim=1)  # 3 x (B, H)
    h_r, h_z, h_h = F.linear(_recurrent_input(h_prev, recurrent_mask), w_hh, b_hh).chunk(3, dim=1)
    reset_gate = torch.sigmoid(x_r + h_r)
    update_gate = torch.sigmoid(x_z + h_z)
    candidate = torch.tanh(x_h + reset_gate * h_h)
    h_t = update_gate * h_prev + (1 - update_gate) * candidate
    return GRUStep(h_t, reset_gate, update_gate, candidate)


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------

def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
    return impl


class _CellBase(nn.Module):
    """Parameters and input checks shared by RNNCell, LSTMCell and GRUCell (torch's layout).

    ``impl="reference"`` runs the step function's equations; "fused" and "fused_own" call
    torch's cell kernel (one step has no input projections to batch, so there is no own variant).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None, *, impl: str = "fused") -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.impl = _check_impl(impl)
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
            raise RuntimeError(f"input.size(-1) must be equal to input_size. "
                               f"Expected {self.input_size}, got {input.size(-1)}")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, H_in)
        out = []
        for name, s in zip(names, states):
            if s is None:
                s = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)
            else:
                if s.dim() != input.dim():
                    raise ValueError(f"{cls}: Expected {name} to be {input.dim()}D like the input, "
                                     f"got {s.dim()}D instead")
                s = s if batched else s.unsqueeze(0)
                expected = (x.size(0), self.hidden_size)
                if tuple(s.shape) != expected:
                    raise RuntimeError(f"Expected {name} size {expected}, got {list(s.shape)}")
            out.append(s)
        return x, out, batched


class RNNCell(_CellBase):
    """One Elman step, h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh); torch.nn.RNNCell's interface.

    input (B, H_in) or (H_in), hidden (B, H) or (H) -> h' of the same batching.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None, *, impl: str = "fused") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, 1, device, dtype, impl=impl)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, (hx,), ("hidden",))
        if self.impl == "reference":
            h_t = rnn_step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity)
        else:
            cell = _VF.rnn_tanh_cell if self.nonlinearity == "tanh" else _VF.rnn_relu_cell
            h_t = cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h_t if batched else h_t.squeeze(0)


class LSTMCell(_CellBase):
    """One LSTM step (see :func:`lstm_step`); torch.nn.LSTMCell's interface.

    input (B, H_in) or (H_in), hx = (h, c) each (B, H) or (H) -> (h', c').
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None,
                 *, impl: str = "fused") -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype, impl=impl)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h0, c0 = (None, None) if hx is None else hx
        x, (h, c), batched = self._prepare(input, (h0, c0), ("hx[0]", "hx[1]"))
        if self.impl == "reference":
            step = lstm_step(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
            h_t, c_t = step.h, step.c
        else:
            h_t, c_t = _VF.lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h_t, c_t) if batched else (h_t.squeeze(0), c_t.squeeze(0))


class GRUCell(_CellBase):
    """One GRU step (see :func:`gru_step`); torch.nn.GRUCell's interface.

    input (B, H_in) or (H_in), hidden (B, H) or (H) -> h' of the same batching.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None,
                 *, impl: str = "fused") -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype, impl=impl)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, (hx,), ("hidden",))
        if self.impl == "reference":
            h_t = gru_step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh).h
        else:
            h_t = _VF.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h_t if batched else h_t.squeeze(0)


# --------------------------------------------------------------------------------------------
# The own recurrence's backward is first-order only
# --------------------------------------------------------------------------------------------

_DOUBLE_BACKWARD = ("double backward is not supported by seqlab's own fused recurrence (impl='fused_own', "
                    "or impl='fused' with recurrent_dropout while training or return_gates=True): "
                    "its backward is first-order only. Use impl='reference' to "
                    "differentiate the gradient (create_graph=True) again.")


def _first_order_only(backward):
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
        err = torch._C._functions.DelayedError(_DOUBLE_BACKWARD.encode(), len(outputs))

        def aliased(t):  # a copy of the tensor that requires grad, so that it gets err as grad_fn
            return None if t is None else t.detach().requires_grad_(True)
        return err(*[aliased(t) for t in outputs])
    return wrapper


# --------------------------------------------------------------------------------------------
# Layers: the shared driver (input handling, stacking, directions, packing) ...
# --------------------------------------------------------------------------------------------

# A step takes (x_t, state, recurrent_mask) and returns (new state, gates or None).
# x_t is the raw input row block on the reference path and the projected one on the fused path.
Step = Callable[[Tensor, State, "Tensor | None"], "tuple[State, Gates | None]"]


class _RecurrentBase(nn.Module):
    """Everything RNN, LSTM, GRU and LayerNormLSTM share; subclasses supply the steps.

    Subclasses set ``_gate_chunks`` and ``_has_cell``, may override ``_param_shapes`` and
    ``_weights``, and implement ``_reference_step`` and either ``_fused`` or ``_fused_inputs``
    plus ``_fused_step`` (and ``_native_kernel`` if torch has the layer).
    """

    _gate_chunks: int
    _has_cell: bool
    _has_native = True

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, impl: str = "fused",
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} should be a number in range [0, 1] representing the probability "
                                 f"of an element being zeroed, got {value!r}")
        for name, value in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than zero, got {value}")
        if proj_size < 0:
            raise ValueError(f"proj_size should be a positive integer or zero to disable projections, got {proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} "
                             f"and hidden_size={hidden_size}")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.proj_size = proj_size
        self.impl = _check_impl(impl)

        factory = {"device": device, "dtype": dtype}
        D = 2 if bidirectional else 1
        H_out = proj_size or hidden_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for direction in range(D):
                layer_input = input_size if layer == 0 else D * H_out
                suffix = "_reverse" if direction == 1 else ""
                names = []
                for template, shape in self._param_shapes(layer_input):
                    name = template.format(layer, suffix)
                    setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()
        self.flatten_parameters()  # built with device="cuda": one cuDNN buffer from the start

    # -- parameters -------------------------------------------------------------------------

    def _param_shapes(self, layer_input: int) -> list[tuple[str, tuple[int, ...]]]:
        """torch's per-(layer, direction) parameters, in torch's order: w_ih, w_hh, b_ih, b_hh, w_hr."""
        G, H = self._gate_chunks * self.hidden_size, self.hidden_size
        H_out = self.proj_size or H
        shapes = [("weight_ih_l{}{}", (G, layer_input)), ("weight_hh_l{}{}", (G, H_out))]
        if self.bias:
            shapes += [("bias_ih_l{}{}", (G,)), ("bias_hh_l{}{}", (G,))]
        if self.proj_size > 0:
            shapes += [("weight_hr_l{}{}", (self.proj_size, H))]
        return shapes

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def _weights(self, layer: int, suffix: str) -> dict[str, Tensor | None]:
        """This (layer, direction)'s parameters by short name: w_ih, w_hh, b_ih, b_hh, w_hr."""
        get = lambda name: getattr(self, f"{name}_l{layer}{suffix}", None)  # noqa: E731
        return {"w_ih": get("weight_ih"), "w_hh": get("weight_hh"), "b_ih": get("bias_ih"),
                "b_hh": get("bias_hh"), "w_hr": get("weight_hr")}

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """Put the parameters into one contiguous cuDNN weight buffer, as torch.nn.RNNBase does.

        Only on CUDA with cuDNN and a layer torch has (not LayerNormLSTM); elsewhere a no-op.
        Without it cuDNN warns and copies the separate weights into a buffer on every call of
        the native path. A port of torch's logic (torch/nn/modules/rnn.py), including its
        short-circuits: mixed dtypes, a weight cuDNN cannot take, or aliased parameters.
        """
        if not self._has_native:
            return
        weights = self._flat_weights()
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
                    num_weights = (4 if self.bias else 2) + (1 if self.proj_size > 0 else 0)
                    torch._cudnn_rnn_flatten_weight(weights, num_weights, self.input_size,
                                                    cudnn_rnn.get_cudnn_mode(self.mode), self.hidden_size,
                                                    self.proj_size, self.num_layers, self.batch_first,
                                                    bool(self.bidirectional))

    def _apply(self, fn, recurse=True):
        # .cuda() / .to() give the parameters new storage: flatten again, as torch.nn.RNNBase does.
        ret = super()._apply(fn, recurse)
        self.flatten_parameters()
        return ret

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        return s + (f", impl={self.impl!r}" if self.impl != "fused" else "")

    # -- forward ----------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _state_sizes(self) -> tuple[int, ...]:
        H_out = self.proj_size or self.hidden_size
        return (H_out, self.hidden_size) if self._has_cell else (H_out,)

    def _check_input(self, x: Tensor, expected_dim: int) -> None:
        w = self.weight_ih_l0
        if x.dtype != w.dtype and not _autocast_enabled():
            raise ValueError(f"{self._name} input dtype ({x.dtype}) does not match weight dtype ({w.dtype}). "
                             f"Convert input: input.to({w.dtype}), or convert model: model.to({x.dtype})")
        if x.dim() != expected_dim:
            raise RuntimeError(f"input must have {expected_dim} dimensions, got {x.dim()}")
        if x.size(-1) != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. "
                               f"Expected {self.input_size}, got {x.size(-1)}")

    def _initial_state(self, hx, batch: int, like: Tensor, batched: bool) -> State:
        """hx as a tuple of (num_layers * D, B, *) tensors, zeros if not given; shapes checked."""
        LD = self.num_layers * (2 if self.bidirectional else 1)
        sizes = self._state_sizes()
        if hx is None:
            return tuple(like.new_zeros(LD, batch, size) for size in sizes)
        states = tuple(hx) if self._has_cell else (hx,)
        if self._has_cell and len(states) != 2:
            raise RuntimeError(f"{self._name}: Expected hx to be a tuple (h_0, c_0), got {len(states)} tensors")
        want = 3 if batched else 2
        dims = tuple(s.dim() for s in states)
        if any(d != want for d in dims):
            what = "hx and cx" if self._has_cell else "hx"
            got = f"({dims[0]}-D, {dims[1]}-D) tensors" if self._has_cell else f"{dims[0]}-D tensor"
            raise RuntimeError(f"For {'batched 3-D' if batched else 'unbatched 2-D'} input, {what} should "
                               f"also be {want}-D but got {got}")
        if not batched:
            states = tuple(s.unsqueeze(1) for s in states)
        for k, (s, size) in enumerate(zip(states, sizes)):
            expected = (LD, batch, size)
            if tuple(s.shape) != expected:
                label = f"hidden[{k}]" if self._has_cell else "hidden"
                raise RuntimeError(f"Expected {label} size {expected}, got {list(s.shape)}")
        return states

    def _native_allowed(self, return_gates: bool) -> bool:
        return (self.impl == "fused" and self._has_native and not return_gates
                and not (self.training and self.recurrent_dropout > 0))

    def forward(self, input, hx=None, *, lengths: Tensor | None = None, return_gates: bool = False):
        """input (L, N, H_in) / (N, L, H_in) / (L, H_in) / PackedSequence -> (output, h_n) or
        (output, (h_n, c_n)); with ``return_gates=True`` a third element, the gates (see below).

        ``lengths`` (N,): valid steps of each sequence of a padded batch; the output is zero past
        each length and h_n is taken at each sequence's last valid step.

        Gates: ``{"l0": {"forget": (N, L, H), ...}, "l0_reverse": ..., "l1": ...}``, keyed like
        the parameter suffixes; LSTM: input, forget, candidate, cell, output; GRU: reset, update,
        candidate. Batch-first whatever ``batch_first`` says; zero past a sequence's end.
        """
        if return_gates and self._gate_chunks == 1:
            raise ValueError("return_gates=True: a vanilla RNN has no gates; its hidden states are the output")
        if lengths is not None:
            return self._forward_lengths(input, hx, lengths, return_gates)
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            self._check_input(data, 2)
            batched, B = True, int(batch_sizes[0])
            states = self._initial_state(hx, B, data, True)
            if hx is not None and sorted_indices is not None:
                states = tuple(s.index_select(1, sorted_indices) for s in states)
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"{self._name}: Expected input to be 2D or 3D, got {input.dim()}D instead")
            batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            x = input if batched else input.unsqueeze(batch_dim)
            self._check_input(x, 3)
            B = x.size(batch_dim)
            if x.size(1 - batch_dim) == 0:  # torch's message for the same mistake
                raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
            states = self._initial_state(hx, B, x, batched)

        gates: dict[str, Gates] = {}
        if self._native_allowed(return_gates):
            hx_native = states if self._has_cell else states[0]
            if packed:
                output, *hidden = self._native(data, batch_sizes, hx_native)
            else:
                output, *hidden = self._native(x, None, hx_native)
            hidden = tuple(hidden)
        else:
            if packed:
                steps, sizes = data, [int(b) for b in batch_sizes]
            else:
                x_tm = x.transpose(0, 1) if self.batch_first else x  # (T, B, H_in)
                T = x_tm.size(0)
                steps, sizes = x_tm.reshape(T * B, self.input_size), [B] * T  # (T * B, H_in)
            out_steps, hidden, gates = self._run_stack(steps, sizes, states, return_gates)
            if packed:
                output = out_steps
            else:
                output = out_steps.view(T, B, out_steps.size(-1))  # (T, B, D * H_out); B may be 0
                output = output.transpose(0, 1) if self.batch_first else output

        if packed:
            output = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            if unsorted_indices is not None:
                hidden = tuple(s.index_select(1, unsorted_indices) for s in hidden)
                gates = {k: {n: g.index_select(0, unsorted_indices) for n, g in v.items()} for k, v in gates.items()}
        elif not batched:
            output = output.squeeze(batch_dim)
            hidden = tuple(s.squeeze(1) for s in hidden)
            gates = {k: {n: g.squeeze(0) for n, g in v.items()} for k, v in gates.items()}
        state = hidden if self._has_cell else hidden[0]
        return (output, state, gates) if return_gates else (output, state)

    def _forward_lengths(self, input: Tensor, hx, lengths: Tensor, return_gates: bool):
        """Padded input plus per-sequence lengths: pack, run, pad back to the input's length."""
        if isinstance(input, PackedSequence):
            raise ValueError("lengths= is for padded input; a PackedSequence already carries its lengths")
        if input.dim() != 3:
            raise ValueError(f"{self._name}: lengths= needs batched 3D input, got {input.dim()}D")
        B, T = (input.size(0), input.size(1)) if self.batch_first else (input.size(1), input.size(0))
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.numel() != B:
            raise ValueError(f"lengths must hold one length per sequence: expected shape ({B},), "
                             f"got {tuple(lengths.shape)}")
        if int(lengths.max()) > T:
            raise ValueError(f"lengths longer than the sequence: expected every length <= {T} "
                             f"(the input's sequence length), got {int(lengths.max())}")
        if int(lengths.min()) < 1:
            raise ValueError(f"expected every length >= 1, got {int(lengths.min())}")
        packed = pack_padded_sequence(input, lengths.cpu(), batch_first=self.batch_first, enforce_sorted=False)
        out = self.forward(packed, hx, return_gates=return_gates)
        output, _ = pad_packed_sequence(out[0], batch_first=self.batch_first, total_length=T)
        if return_gates:
            gates = {k: {n: F.pad(g, (0, 0, 0, T - g.size(1))) for n, g in v.items()} for k, v in out[2].items()}
            return output, out[1], gates
        return output, out[1]

    # -- seqlab's own recurrence ------------------------------------------------------------

    def _recurrent_mask(self, B: int, like: Tensor) -> Tensor | None:
        """Variational dropout: one mask per sequence, (B, H_out), reused at every step."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        keep = 1.0 - self.recurrent_dropout
        H_out = self.proj_size or self.hidden_size
        return torch.bernoulli(like.new_full((B, H_out), keep)) / keep if keep > 0 else like.new_zeros(B, H_out)

    def _run_stack(self, steps: Tensor, sizes: list[int], states: State, record: bool):
        """Layers x directions over packed time-major rows.

        steps (N, H_in): the rows of step t are steps[offset_t : offset_t + sizes[t]], sequences
        sorted longest first (a padded batch is the case sizes == [B] * T). Returns the top
        layer's rows (N, D * H_out), the final states and the recorded gates.

        A layer whose loop takes its input step by step (the reference, and the inference
        steps) gets the layer below's outputs as that loop left them (the reference's list of
        per-step rows, the inference steps' output block), not concatenated again first.
        """
        D = 2 if self.bidirectional else 1
        B = sizes[0]
        finals: list[list[Tensor]] = [[] for _ in states]
        gates: dict[str, Gates] = {}
        # Without autograd (and gates to record), a class with an inference step runs it; not
        # under forward-mode AD or torch.func, which need ops with derivative formulas.
        inference = (self.impl != "reference" and self._inference_step is not None
                     and not (record or torch.is_grad_enabled()) and B > 0 and _onednn_usable(steps)
                     and not _plain_autograd_only())
        per_step = self.impl == "reference" or inference  # loops that read x_t one step at a time
        layer_in: Tensor | list[Tensor] = steps
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                suffix = "_reverse" if direction else ""
                idx = layer * D + direction
                mask = self._recurrent_mask(B, steps)
                w = self._weights(layer, suffix)
                out_size = None
                if self.impl == "reference":
                    xs, step = layer_in, self._reference_step(w)
                elif inference:
                    xs, step = layer_in, self._inference_step(w, B)
                    out_size = self.proj_size or self.hidden_size  # the step writes h_t into the output block
                else:
                    xs, step = self._fused(_rows(layer_in), w, record, reverse=direction == 1, batch=B)
                out, state_n, rec = _recur(step, xs, sizes, tuple(s[idx] for s in states),
                                           reverse=direction == 1, mask=mask, record=record, out_size=out_size)
                outs.append(out)
                for k, s in enumerate(state_n):
                    finals[k].append(s)
                if record:
                    gates[f"l{layer}{suffix}"] = rec
            dropout = self.dropout > 0 and self.training and layer < self.num_layers - 1
            if D == 1 and per_step and not dropout and layer < self.num_layers - 1:
                layer_in = outs[0]  # the per-step rows (a list, or the inference steps' block) as they are
            elif D == 1:
                layer_in = _rows(outs[0])  # (N, H_out)
            else:
                layer_in = torch.cat([_rows(o) for o in outs], dim=1)  # (N, 2 * H_out)
            if dropout:
                layer_in = F.dropout(layer_in, self.dropout, training=True)
        return layer_in, tuple(torch.stack(f, 0) for f in finals), gates

    # Subclass hooks.
    def _reference_step(self, w) -> Step:
        raise NotImplementedError

    # (w, batch) -> Step taking raw input rows x_t and the rows of the output block to write h_t
    # into: the fused step without autograd, where a class has one (LSTM, LayerNormLSTM); run on
    # float32 CPU tensors with oneDNN only.
    _inference_step: Callable[..., Step] | None = None

    def _fused(self, layer_in: Tensor, w, record: bool, reverse: bool, batch: int) -> tuple[Tensor, Step]:
        """The projected inputs of every step (N, G) and the step that consumes them."""
        return self._fused_inputs(layer_in, w), self._fused_step(w, record, batch)

    def _fused_inputs(self, layer_in: Tensor, w) -> Tensor:
        raise NotImplementedError

    def _fused_step(self, w, record: bool, batch: int) -> Step:
        raise NotImplementedError

    def _native_kernel(self) -> Callable[..., tuple[Tensor, ...]]:
        """torch's fused kernel for this layer (``torch._VF.lstm``, ``gru``, ``rnn_tanh``, ...)."""
        raise NotImplementedError

    # torch.compile runs it eagerly, as it does torch.nn's own RNN modules: inductor cannot
    # lower the oneDNN RNN op on CPU.
    @torch.compiler.disable
    def _native(self, x: Tensor, batch_sizes: Tensor | None, hx):
        """torch's fused kernel on this module's parameters, called as torch.nn.RNNBase calls it."""
        fn = self._native_kernel()
        if batch_sizes is None:
            return fn(x, hx, self._flat_weights(), self.bias, self.num_layers, self.dropout,
                      self.training, self.bidirectional, self.batch_first)
        return fn(x, batch_sizes, hx, self._flat_weights(), self.bias, self.num_layers, self.dropout,
                  self.training, self.bidirectional)

    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]


def _rows(xs: Tensor | list[Tensor]) -> Tensor:
    """Per-step rows as one (N, H) block (a list from _recur is concatenated; a block as is)."""
    return xs if isinstance(xs, Tensor) else torch.cat(xs, dim=0)


def _recur(step: Step, xs: Tensor | list[Tensor], sizes: list[int], state: State, *,
           reverse: bool, mask: Tensor | None, record: bool, out_size: int | None = None):
    """Run one direction of one layer: h_t = step(x_t, h_{t-1}) for t = 1..T (or T..1).

    Sequences are sorted longest first, so at step t the first sizes[t] rows are the live
    ones; the others keep their state (finished sequences going forward, not yet started
    ones going backward, which is why the reverse pass needs no per-sequence flipping).
    xs: the rows (N, *) or the list of each step's rows. Returns the outputs as the list of
    each step's rows (sizes[t], H_out) (``_rows`` makes them one (N, H_out) block in the input's
    packed row order), the final state and the gates {name: (B, T, H)}.

    out_size (the inference steps): the step takes a fourth argument, the (sizes[t], out_size)
    rows of one preallocated (N, out_size) output block, writes h_t there, and that block is
    returned: no list of T separate h_t and no concatenation of them afterwards.
    """
    B, T = sizes[0], len(sizes)
    outs: list[Tensor | None] = [None] * T
    out_rows: list[Tensor] | None = None
    if out_size is not None:
        first = xs if isinstance(xs, Tensor) else xs[0]
        block = first.new_empty(sum(sizes), out_size)  # (N, H_out)
        out_rows = list(block.split(sizes))
    recorded: list[Gates | None] = [None] * T
    # One split rather than T slices: the backward of a slice is a zero tensor the size of the
    # whole input per step (quadratic in T); that of a split is a single concatenation.
    x_steps = xs.split(sizes) if isinstance(xs, Tensor) else xs  # T x (sizes[t], *)
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        bs = sizes[t]
        x_t = x_steps[t]  # (bs, *)
        extra = () if out_rows is None else (out_rows[t],)
        if bs == B:
            state, gates_t = step(x_t, state, mask, *extra)
        else:
            live, gates_t = step(x_t, tuple(s[:bs] for s in state), None if mask is None else mask[:bs], *extra)
            state = tuple(torch.cat([n, s[bs:]]) for n, s in zip(live, state))
            if gates_t is not None:
                gates_t = {k: F.pad(g, (0, 0, 0, B - bs)) for k, g in gates_t.items()}
        outs[t] = state[0] if bs == B else state[0][:bs]
        if record:  # otherwise let them go now: T steps of gates held to the end cost memory and page faults
            recorded[t] = gates_t
    gates = {}
    if record:
        gates = {k: torch.stack([r[k] for r in recorded], dim=1) for k in recorded[0]}  # (B, T, H)
    return (outs if out_rows is None else block), state, gates


class _BatchedWeightGrad(torch.autograd.Function):
    """Identity on the projected inputs A_x (N, G) whose backward also returns dW_hh in one GEMM.

    The fused loop computes A_t = A_x,t + H_{t-1} W_hh^T with W_hh detached, so autograd does not
    run one small (H, B) @ (B, G) weight-gradient GEMM per step. Since dL/dA_t = dL/dA_x,t, the
    gradient arriving here after the whole loop's backward is dA for every step, and
    dW_hh = dA^T H_prev is one (G, N) @ (N, H) GEMM over the H_{t-1} the loop stored.
    """

    @staticmethod
    def forward(ctx, xp, w_hh, h_prev, reverse, perm):
        ctx.h_prev, ctx.reverse, ctx.perm, ctx.w_dtype = h_prev, reverse, perm, w_hh.dtype
        return xp.view_as(xp)

    @staticmethod
    @_first_order_only
    def backward(ctx, grad):
        steps = ctx.h_prev[::-1] if ctx.reverse else ctx.h_prev  # back into the rows' time order
        # Under autocast grad is bf16/fp16 while the stored H_{t-1} may be float32 (h_0, or the
        # states of a float32 model): multiply in grad's dtype, as autocast's matmul did forward.
        h = torch.cat(steps, dim=0).to(grad.dtype)  # (N, H_out)
        grad_w = _mm_at_b(grad, h).to(ctx.w_dtype)  # (G, N) @ (N, H_out)
        if ctx.perm is not None:  # undo the gate reordering (an involution)
            grad_w = grad_w.index_select(0, ctx.perm)
        return grad, grad_w, None, None, None


def _batched_weight_grad(xp: Tensor, w_hh: Tensor, reverse: bool, perm: Tensor | None = None):
    """(xp, W_hh for the loop, list the loop fills with H_{t-1}), or (xp, W_hh, None) without grad.

    Under torch.compile also (xp, W_hh, None): autograd then forms dW_hh step by step, because
    the Function's list of H_{t-1}, filled only as the loop runs, cannot be traced.
    """
    if torch.compiler.is_compiling() or not (torch.is_grad_enabled() and w_hh.requires_grad):
        return xp, w_hh, None
    h_prev: list[Tensor] = []
    return _BatchedWeightGrad.apply(xp, w_hh, h_prev, reverse, perm), w_hh.detach(), h_prev


class RNN(_RecurrentBase):
    """Elman RNN, H_t = act(X_t W_x + H_{t-1} W_h + b) with act tanh or relu; torch.nn.RNN's interface.

    Args as torch.nn.RNN: input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device, dtype; keyword-only: impl,
    recurrent_dropout. Shapes: see the module docstring.
    """

    _gate_chunks, _has_cell = 1, False

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *, impl: str = "fused",
                 recurrent_dropout: float = 0.0) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, 0, device, dtype,
                         impl=impl, recurrent_dropout=recurrent_dropout)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")

    def _reference_step(self, w) -> Step:
        def step(x_t, state, mask):
            return (rnn_step(x_t, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"],
                             self.nonlinearity, mask),), None
        return step

    def _fused(self, layer_in, w, record, reverse, batch):
        b = None if w["b_ih"] is None else w["b_ih"] + w["b_hh"]
        xp = _linear(layer_in, _PackedWeight(w["w_ih"], layer_in.size(0)), b)  # (N, H): X W_x + b, all steps
        xp, w_hh, h_prev = _batched_weight_grad(xp, w["w_hh"], reverse)
        pw_hh, act = _PackedWeight(w_hh, batch), tanh if self.nonlinearity == "tanh" else torch.relu

        def step(xp_t, state, mask):
            h = state[0] if mask is None else state[0] * mask
            if h_prev is not None:
                h_prev.append(h.detach())
            return (act(_linear(h, pw_hh, add=xp_t)),), None
        return xp, step

    def _native_kernel(self):
        return _VF.rnn_tanh if self.nonlinearity == "tanh" else _VF.rnn_relu


_IFOG: dict[tuple[int, torch.device], Tensor] = {}


def _ifog(H: int, device) -> Tensor:
    """Row order i, f, o, g for torch's i, f, g, o gate blocks: the fused step then applies one
    sigmoid to the first 3H columns and one tanh to the last H, instead of four calls.
    Built once per (H, device) and reused by every forward."""
    key = (H, torch.device(device))
    perm = None if torch.compiler.is_compiling() else _IFOG.get(key)
    if perm is None:
        # Never an inference tensor: indexing saves the index for backward.
        with torch.inference_mode(False):
            perm = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H),
                              torch.arange(2 * H, 3 * H)]).to(device)
        if not torch.compiler.is_compiling():
            _IFOG[key] = perm
    return perm


def _candidate_times_minus_2_(t: Tensor, H: int) -> Tensor:
    """t (4H, ...) in torch's i, f, g, o block order, its candidate block g multiplied by -2 in
    place (t must be a fresh copy): the inference steps then get tanh(a_g) = 1 - 2 sigmoid(-2 a_g)
    from the same sigmoid as the gates."""
    t[2 * H:3 * H] *= -2
    return t


def _fused_lstm_gates(a: Tensor, c_prev: Tensor, H: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fused LSTM step's gates and cell update (shared with LayerNormLSTM).

    a (bs, 4H): pre-activations in row order i, f, o, g (see _ifog), so one sigmoid gives the
    three gates and one tanh the candidate. Returns f_t, i_t, g_t, c_t, o_t, each (bs, H).
    """
    a_ifo, a_g = a.split([3 * H, H], dim=1)
    i_t, f_t, o_t = torch.sigmoid(a_ifo).chunk(3, dim=1)  # input, forget, output gates at once
    g_t = tanh(a_g)  # candidate
    c_t = torch.addcmul(f_t * c_prev, i_t, g_t)  # cell update: f * c + i * g
    return f_t, i_t, g_t, c_t, o_t


def _lstm_gates(f_t: Tensor, i_t: Tensor, g_t: Tensor, c_t: Tensor, o_t: Tensor) -> Gates:
    return {"forget": f_t, "input": i_t, "candidate": g_t, "cell": c_t, "output": o_t}


class LSTM(_RecurrentBase):
    """Long short-term memory (equations in :func:`lstm_step`); torch.nn.LSTM's interface.

    Args as torch.nn.LSTM: input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device, dtype; keyword-only: impl,
    recurrent_dropout. Returns (output, (h_n, c_n)); shapes in the module docstring.
    """

    _gate_chunks, _has_cell = 4, True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, impl: str = "fused",
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype, impl=impl,
                         recurrent_dropout=recurrent_dropout)

    def _reference_step(self, w) -> Step:
        def step(x_t, state, mask):
            s = lstm_step(x_t, state[0], state[1], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], w["w_hr"], mask)
            return (s.h, s.c), s.gates()
        return step

    def _fused(self, layer_in, w, record, reverse, batch):
        H = self.hidden_size
        perm = _ifog(H, layer_in.device)  # gate rows reordered i, f, o, g (see _ifog)
        b = None if w["b_ih"] is None else (w["b_ih"] + w["b_hh"])[perm]
        xp = _linear(layer_in, _PackedWeight(w["w_ih"][perm], layer_in.size(0)), b)  # (N, 4H), all steps
        xp, w_hh, h_prev = _batched_weight_grad(xp, w["w_hh"], reverse, perm)
        pw_hh = _PackedWeight(w_hh[perm], batch)  # (4H, H_out), packed once per call
        w_hr = w["w_hr"]

        def step(xp_t, state, mask):
            h, c = state
            hr = h if mask is None else h * mask
            if h_prev is not None:
                h_prev.append(hr.detach())
            a = _linear(hr, pw_hh, add=xp_t)  # (bs, 4H): A_x,t + H_{t-1} W_hh^T
            f_t, i_t, g_t, c_t, o_t = _fused_lstm_gates(a, c, H)
            h_t = o_t * tanh(c_t)  # (bs, H)
            if w_hr is not None:
                h_t = linear(h_t, w_hr)  # (bs, H_out)
            return (h_t, c_t), (_lstm_gates(f_t, i_t, g_t, c_t, o_t) if record else None)
        return xp, step

    def _inference_step(self, w, batch: int) -> Step:
        """The fused step without autograd, on oneDNN (CPU, float32): the layer's raw input rows in.

        What inference changes: nothing is kept for a backward, so each step can do all of its
        work on data that is still in cache. One GEMM per step over [X_t, H_{t-1}] with
        [W_ih, W_hh] (the lecture's X_t W_x + H_{t-1} W_h + b as one product) and the gate
        sigmoid applied inside the GEMM (oneDNN's post-op), rather than projecting every step's
        input up front: on the 2-core machine the up-front (T*B, 4H) block is read back from
        main memory at every step, which cost more than it saved (docs/benchmarks.md).
        The candidate's tanh comes from the same sigmoid, tanh(a) = 1 - 2 sigmoid(-2a), with its
        rows of W and b scaled by -2 (exact in floating point); tanh(c_t) likewise (torch.tanh
        on CPU is about 5x slower than torch.sigmoid). Written this way the cell update and the
        output are one fused multiply-add each: c_t = f c + i - 2 i s_g, h_t = o - 2 o s_c.
        """
        H = self.hidden_size
        # torch's gate order i, f, g, o kept (the sigmoid covers all four blocks, so no reordering
        # copy); the candidate's rows times -2, so that s_g = sigmoid(-2 a_g), tanh(a_g) = 1 - 2 s_g.
        weight = _candidate_times_minus_2_(torch.cat([w["w_ih"], w["w_hh"]], dim=1), H)  # (4H, H_in + H_out)
        bias = None if w["b_ih"] is None else _candidate_times_minus_2_(w["b_ih"] + w["b_hh"], H)  # (4H,)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch)
        w_hr = w["w_hr"]

        def step(x_t, state, mask, out):
            h, c = state
            xh = torch.cat([x_t, h if mask is None else h * mask], dim=1)  # (bs, H_in + H_out)
            s = torch.ops.mkldnn._linear_pointwise(xh, packed, bias, "sigmoid", [], "")  # (bs, 4H)
            i_t, f_t, s_g, o_t = s.chunk(4, dim=1)  # input, forget gates; sigmoid(-2 a_g); output gate
            c_t = torch.addcmul(torch.addcmul(i_t, f_t, c), i_t, s_g, value=-2)  # f c + i tanh(a_g)
            s_c = torch.sigmoid(c_t * -2)
            if w_hr is None:
                h_t = torch.addcmul(o_t, o_t, s_c, value=-2, out=out)  # o tanh(c_t), (bs, H)
            else:
                h_t = out.copy_(linear(torch.addcmul(o_t, o_t, s_c, value=-2), w_hr))  # (bs, H_out)
            return (h_t, c_t), None
        return step

    def _native_kernel(self):
        return _VF.lstm


class GRU(_RecurrentBase):
    """Gated recurrent unit (equations in :func:`gru_step`); torch.nn.GRU's interface.

    Args as torch.nn.GRU: input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device, dtype; keyword-only: impl, recurrent_dropout.
    """

    _gate_chunks, _has_cell = 3, False

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, impl: str = "fused", recurrent_dropout: float = 0.0) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, impl=impl, recurrent_dropout=recurrent_dropout)

    def _reference_step(self, w) -> Step:
        def step(x_t, state, mask):
            s = gru_step(x_t, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], mask)
            return (s.h,), s.gates()
        return step

    def _fused_inputs(self, layer_in, w):
        # (N, 3H); b_hh stays inside r * (...)
        return _linear(layer_in, _PackedWeight(w["w_ih"], layer_in.size(0)), w["b_ih"])

    def _fused_step(self, w, record, batch):
        b_hh, H = w["b_hh"], self.hidden_size
        pw_hh = _PackedWeight(w["w_hh"], batch)

        def step(xp_t, state, mask):
            h = state[0]
            hr = h if mask is None else h * mask
            gh = _linear(hr, pw_hh, b_hh)  # (bs, 3H)
            x_rz, x_n = xp_t.split([2 * H, H], dim=1)
            h_rz, h_n = gh.split([2 * H, H], dim=1)
            rz = torch.sigmoid(x_rz + h_rz)
            r, z = rz.chunk(2, dim=1)
            n = tanh(torch.addcmul(x_n, r, h_n))
            h = torch.addcmul(n, z, h - n)  # z * h + (1 - z) * n
            return (h,), ({"reset": r, "update": z, "candidate": n} if record else None)
        return step

    def _native_kernel(self):
        return _VF.gru


def detach_state(state):
    """Cut the graph behind a recurrent state for truncated BPTT: a tensor, an (h, c) tuple, or None."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"detach_state expects a tensor or a tuple of tensors, got {type(state).__name__}")

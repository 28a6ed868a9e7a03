"""RNN, LSTM and GRU layers with torch.nn's interface, and the one place that picks their path.

The layer classes own the parameters (torch's names, shapes and initialisation, so
``load_state_dict`` works both ways), torch-compatible inputs and outputs (batched, unbatched,
``batch_first``, ``PackedSequence``, plus ``lengths=`` and ``return_gates=``), packing and
stacking (layers, directions, dropout between layers). What runs one direction of one layer is
chosen by :func:`select_path`:

- ``"reference"`` (``impl="reference"``): the step functions of ``equations.py``, one time step
  after another (``loop.run_direction``).
- ``"native"`` (``impl="fused"`` where torch has the configuration): torch's own kernel
  (``torch._VF.lstm`` etc., through ``torch_internals``) on this module's parameters.
- ``"fused_own"`` (``impl="fused_own"``, and "fused" for what torch lacks: variational dropout
  while training, gate recording): seqlab's own fused loop, ``fast/fused.py``.
- ``"inference"``: fused_own without autograd, for the LSTMs on float32 CPU tensors with
  oneDNN: ``fast/inference.py``.

Double backward (``create_graph=True`` and then differentiating the gradient, e.g. a gradient
penalty) is not supported on the LSTM's and RNN's own fused loop, whose hand-written backward
(``fast/backward.py``) is first-order only and raises an error that says so; "reference",
"native" and LayerNormLSTM's loop (plain autograd) support it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .cells import check_impl
from .equations import gru_step, lstm_step, rnn_step
from .fast import fused_gru, fused_lstm, fused_rnn, lstm_inference_step
from .loop import InferenceStep, RecordedGates, State, Step, Weights, rows, run_direction
from .torch_internals import autocast_enabled, flatten_cudnn_weights, native_layer, onednn_usable, plain_autograd_only

Path = Literal["reference", "native", "fused_own", "inference"]


def select_path(layer: _RecurrentBase, x: Tensor, batch: int, *, return_gates: bool) -> Path:
    """Which implementation runs ``layer`` on input x (any tensor of the input's dtype and device)
    of ``batch`` sequences: the one place that decides it.

    - "reference" whenever impl="reference".
    - "native" (torch's kernel) for impl="fused" where torch has the configuration: a layer torch
      has, no gate recording, no variational dropout while training.
    - "inference" for the rest when nothing needs autograd (grad mode off, no gates to record),
      the layer has an inference step (LSTM, LayerNormLSTM), the batch is not empty and oneDNN
      takes x (float32 on CPU, outside torch.compile and autocast); not under forward-mode AD
      or torch.func, which need ops with derivative formulas.
    - "fused_own" otherwise.
    """
    if layer.impl == "reference":
        return "reference"
    if (
        layer.impl == "fused"
        and layer._has_native
        and not return_gates
        and not (layer.training and layer.recurrent_dropout > 0)
    ):
        return "native"
    if (
        layer._inference_step is not None
        and not (return_gates or torch.is_grad_enabled())
        and batch > 0
        and onednn_usable(x)
        and not plain_autograd_only()
    ):
        return "inference"
    return "fused_own"


class _RecurrentBase(nn.Module):
    """Everything RNN, LSTM, GRU and LayerNormLSTM share: parameters, torch-compatible inputs and
    outputs, packing, stacking, and running the path :func:`select_path` picks.

    A layer sets ``_gate_chunks`` (gate blocks in W) and ``_has_cell``, may override
    ``_param_shapes``, ``_weights`` and ``reset_parameters``, and supplies its steps:
    ``_reference_step`` (its equation), ``_fused`` (``fast.fused``) and, if it has one,
    ``_inference_step`` (``fast.inference``). ``_has_native``: torch has the layer (``self.mode``
    names its kernel in ``torch_internals``).
    """

    _gate_chunks: int
    _has_cell: bool
    _has_native = True

    def __init__(
        self,
        mode: str,
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
        super().__init__()
        for name, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(
                    f"{name} should be a number in range [0, 1] representing the probability "
                    f"of an element being zeroed, got {value!r}"
                )
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
            raise ValueError(
                f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} and hidden_size={hidden_size}"
            )
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.proj_size = proj_size
        self.impl = check_impl(impl)

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

    def _weights(self, layer: int, suffix: str) -> Weights:
        """This (layer, direction)'s parameters by short name: w_ih, w_hh, b_ih, b_hh, w_hr."""
        get = lambda name: getattr(self, f"{name}_l{layer}{suffix}", None)  # noqa: E731
        return {
            "w_ih": get("weight_ih"),
            "w_hh": get("weight_hh"),
            "b_ih": get("bias_ih"),
            "b_hh": get("bias_hh"),
            "w_hr": get("weight_hr"),
        }

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """Put the parameters into one contiguous cuDNN weight buffer, as torch.nn.RNNBase does.

        Only on CUDA with cuDNN and a layer torch has (not LayerNormLSTM); elsewhere a no-op.
        Without it cuDNN warns and copies the separate weights into a buffer on every call of
        the native path.
        """
        if self._has_native:
            flatten_cudnn_weights(
                self._flat_weights(),
                self.mode,
                input_size=self.input_size,
                hidden_size=self.hidden_size,
                proj_size=self.proj_size,
                num_layers=self.num_layers,
                bias=self.bias,
                batch_first=self.batch_first,
                bidirectional=self.bidirectional,
            )

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
        if x.dtype != w.dtype and not autocast_enabled():
            raise ValueError(
                f"{self._name} input dtype ({x.dtype}) does not match weight dtype ({w.dtype}). "
                f"Convert input: input.to({w.dtype}), or convert model: model.to({x.dtype})"
            )
        if x.dim() != expected_dim:
            raise RuntimeError(f"input must have {expected_dim} dimensions, got {x.dim()}")
        if x.size(-1) != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.size(-1)}"
            )

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
            raise RuntimeError(
                f"For {'batched 3-D' if batched else 'unbatched 2-D'} input, {what} should "
                f"also be {want}-D but got {got}"
            )
        if not batched:
            states = tuple(s.unsqueeze(1) for s in states)
        for k, (s, size) in enumerate(zip(states, sizes)):
            expected = (LD, batch, size)
            if tuple(s.shape) != expected:
                label = f"hidden[{k}]" if self._has_cell else "hidden"
                raise RuntimeError(f"Expected {label} size {expected}, got {list(s.shape)}")
        return states

    def forward(self, input, hx=None, *, lengths: Tensor | None = None, return_gates: bool = False):
        """input (L, N, H_in) / (N, L, H_in) / (L, H_in) / PackedSequence -> (output, h_n) or
        (output, (h_n, c_n)); with ``return_gates=True`` a third element, the gates (see below).

        ``lengths`` (N,): valid steps of each sequence of a padded batch; the output is zero past
        each length and h_n is taken at each sequence's last valid step.

        Gates (:data:`RecordedGates`): ``{"l0": {"forget": (N, L, H), ...}, "l0_reverse": ...,
        "l1": ...}``, keyed like the parameter suffixes; LSTM: forget, input, candidate, cell,
        output; GRU: reset, update, candidate. Batch-first whatever ``batch_first`` says; zero
        past a sequence's end.
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

        gates: RecordedGates = {}
        path = select_path(self, data if packed else x, B, return_gates=return_gates)
        if path == "native":
            hx_native = states if self._has_cell else states[0]
            output, *hidden = native_layer(
                self.mode,
                data if packed else x,
                batch_sizes if packed else None,
                hx_native,
                self._flat_weights(),
                self.bias,
                self.num_layers,
                self.dropout,
                self.training,
                self.bidirectional,
                self.batch_first,
            )
            hidden = tuple(hidden)
        else:
            if packed:
                steps, sizes = data, [int(b) for b in batch_sizes]
            else:
                x_tm = x.transpose(0, 1) if self.batch_first else x  # (T, B, H_in)
                T = x_tm.size(0)
                steps, sizes = x_tm.reshape(T * B, self.input_size), [B] * T  # (T * B, H_in)
            out_steps, hidden, gates = self._run_stack(steps, sizes, states, path, return_gates)
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
            raise ValueError(
                f"lengths must hold one length per sequence: expected shape ({B},), got {tuple(lengths.shape)}"
            )
        if int(lengths.max()) > T:
            raise ValueError(
                f"lengths longer than the sequence: expected every length <= {T} "
                f"(the input's sequence length), got {int(lengths.max())}"
            )
        if int(lengths.min()) < 1:
            raise ValueError(f"expected every length >= 1, got {int(lengths.min())}")
        packed = pack_padded_sequence(input, lengths.cpu(), batch_first=self.batch_first, enforce_sorted=False)
        out = self.forward(packed, hx, return_gates=return_gates)
        output, _ = pad_packed_sequence(out[0], batch_first=self.batch_first, total_length=T)
        if return_gates:
            gates = {k: {n: F.pad(g, (0, 0, 0, T - g.size(1))) for n, g in v.items()} for k, v in out[2].items()}
            return output, out[1], gates
        return output, out[1]

    # -- the loops: reference, fused_own, inference -----------------------------------------

    def _recurrent_mask(self, B: int, like: Tensor) -> Tensor | None:
        """Variational dropout: one mask per sequence, (B, H_out), reused at every step."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        keep = 1.0 - self.recurrent_dropout
        H_out = self.proj_size or self.hidden_size
        return torch.bernoulli(like.new_full((B, H_out), keep)) / keep if keep > 0 else like.new_zeros(B, H_out)

    def _run_stack(self, steps: Tensor, sizes: list[int], states: State, path: Path, record: bool):
        """Layers x directions over packed time-major rows, on ``path`` (not "native").

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
        gates: RecordedGates = {}
        per_step = path in ("reference", "inference")  # loops that read x_t one step at a time
        layer_in: Tensor | list[Tensor] = steps
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                suffix = "_reverse" if direction else ""
                idx = layer * D + direction
                mask = self._recurrent_mask(B, steps)
                w = self._weights(layer, suffix)
                out_size = None
                if path == "reference":
                    xs, step = layer_in, self._reference_step(w)
                elif path == "inference":
                    xs, step = layer_in, self._inference_step(w, B)
                    out_size = self.proj_size or self.hidden_size  # the step writes h_t into the output block
                else:
                    xs, step = self._fused(rows(layer_in), w, batch=B, reverse=direction == 1)
                out, state_n, rec = run_direction(
                    step,
                    xs,
                    sizes,
                    tuple(s[idx] for s in states),
                    reverse=direction == 1,
                    mask=mask,
                    record=record,
                    out_size=out_size,
                )
                outs.append(out)
                for k, s in enumerate(state_n):
                    finals[k].append(s)
                if record:
                    gates[f"l{layer}{suffix}"] = rec
            dropout = self.dropout > 0 and self.training and layer < self.num_layers - 1
            if D == 1 and per_step and not dropout and layer < self.num_layers - 1:
                layer_in = outs[0]  # the per-step rows (a list, or the inference steps' block) as they are
            elif D == 1:
                layer_in = rows(outs[0])  # (N, H_out)
            else:
                layer_in = torch.cat([rows(o) for o in outs], dim=1)  # (N, 2 * H_out)
            if dropout:
                layer_in = F.dropout(layer_in, self.dropout, training=True)
        return layer_in, tuple(torch.stack(f, 0) for f in finals), gates

    # -- what each layer supplies -----------------------------------------------------------

    def _reference_step(self, w: Weights) -> Step:
        """The step of ``impl="reference"``: this layer's function from equations.py, as it is."""
        raise NotImplementedError

    def _fused(self, layer_in: Tensor, w: Weights, *, batch: int, reverse: bool) -> tuple[Tensor, Step]:
        """fused_own: the projected inputs of every step (N, G) and the step that consumes them."""
        raise NotImplementedError

    # (w, batch) -> the fused step without autograd (fast.inference), where a layer has one
    # (LSTM, LayerNormLSTM); select_path runs it on float32 CPU tensors with oneDNN only.
    _inference_step: Callable[..., InferenceStep] | None = None

    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]


# Shape-contract pieces every layer's docstring shares (help(seqlab.nn.LSTM) shows them).
_IMPL_ARGS = """impl (keyword-only): "fused" (default): torch's own kernel where torch has the
            configuration, else "fused_own"; "fused_own": seqlab's fused loop; "reference":
            the step function's equations, one step at a time (see :func:`select_path`).
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

    def _reference_step(self, w: Weights) -> Step:
        def step(x_t, state, mask):
            return (rnn_step(x_t, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], self.nonlinearity, mask),), None

        return step

    def _fused(self, layer_in: Tensor, w: Weights, *, batch: int, reverse: bool) -> tuple[Tensor, Step]:
        return fused_rnn(layer_in, w, self.nonlinearity, batch=batch, reverse=reverse)


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

    def _reference_step(self, w: Weights) -> Step:
        def step(x_t, state, mask):
            s = lstm_step(x_t, state[0], state[1], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], w["w_hr"], mask)
            return (s.h, s.c), s

        return step

    _fused = staticmethod(fused_lstm)
    _inference_step = staticmethod(lstm_inference_step)


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

    def _reference_step(self, w: Weights) -> Step:
        def step(x_t, state, mask):
            s = gru_step(x_t, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], mask)
            return (s.h,), s

        return step

    _fused = staticmethod(fused_gru)


def detach_state(state):
    """Cut the graph behind a recurrent state for truncated BPTT: a tensor, an (h, c) tuple, or None."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"detach_state expects a tensor or a tuple of tensors, got {type(state).__name__}")

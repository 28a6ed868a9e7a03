"""What RNN, LSTM, GRU, LayerNormLSTM and custom-cell layers share: ``_RecurrentBase``.

It owns torch-compatible inputs and outputs (batched, unbatched, ``batch_first``,
``PackedSequence``, plus ``lengths=`` and ``return_gates=``), the initial state, and stacking
(layers, directions, dropout between layers), and runs the route :func:`routes.select_route`
picks: torch's kernel, the compiled equations (``compiled.py``) or the eager loop (``loop.py``).
Each layer supplies its parameters and its step (:meth:`_RecurrentBase.step_function`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ...torch_internals import autocast_enabled, flatten_cudnn_weights, native_layer
from .compiled import run_compiled
from .equations import input_term
from .loop import RecordedGates, State, Step, Weights, rows, run_direction
from .routes import check_impl, select_route


class _RecurrentBase(nn.Module):
    """Everything RNN, LSTM, GRU, LayerNormLSTM and custom-cell layers share: parameters,
    torch-compatible inputs and outputs, packing, stacking, and running the route
    :func:`select_route` picks.

    A layer sets ``_gate_chunks`` (gate blocks in W, 0 for none) and ``_has_cell``, may override
    ``_param_shapes``, ``_build_parameters``, ``_weights``, ``_state_sizes`` and
    ``reset_parameters``, and supplies its step: ``_reference_step(w)``, its equation on one
    (layer, direction)'s weights. ``_has_native``: torch has the layer (``self.mode`` names its
    kernel in ``torch_internals``).
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
        self._build_parameters({"device": device, "dtype": dtype})
        self.reset_parameters()
        self.flatten_parameters()  # built with device="cuda": one cuDNN buffer from the start

    # -- parameters -------------------------------------------------------------------------

    def _build_parameters(self, factory: dict) -> None:
        """torch's flat parameters, one set per (layer, direction), named as torch names them."""
        D = 2 if self.bidirectional else 1
        H_out = self.proj_size or self.hidden_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(self.num_layers):
            for direction in range(D):
                layer_input = self.input_size if layer == 0 else D * H_out
                suffix = "_reverse" if direction == 1 else ""
                names = []
                for template, shape in self._param_shapes(layer_input):
                    name = template.format(layer, suffix)
                    setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)

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

    # The step functions' short names for a (layer, direction)'s parameters, and torch's names for them.
    _weight_names = {
        "w_ih": "weight_ih",
        "w_hh": "weight_hh",
        "b_ih": "bias_ih",
        "b_hh": "bias_hh",
        "w_hr": "weight_hr",
    }

    def _weights(self, layer: int, suffix: str) -> Weights:
        """This (layer, direction)'s parameters by short name (``_weight_names``); None where absent."""
        return {short: getattr(self, f"{name}_l{layer}{suffix}", None) for short, name in self._weight_names.items()}

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
        return s + (f", impl={self.impl!r}" if self.impl != self._default_impl else "")

    # -- forward ----------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _state_sizes(self) -> tuple[int, ...]:
        H_out = self.proj_size or self.hidden_size
        return (H_out, self.hidden_size) if self._has_cell else (H_out,)

    def _check_input(self, x: Tensor, expected_dim: int) -> None:
        w = next(self.parameters())
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

    def zero_state(self, batch: int, like: Tensor) -> State:
        """The initial state when none is given: (h_0,) or (h_0, c_0, ...), each (num_layers * D, B, *) zeros."""
        LD = self.num_layers * (2 if self.bidirectional else 1)
        return tuple(like.new_zeros(LD, batch, size) for size in self._state_sizes())

    def _initial_state(self, hx, batch: int, like: Tensor, batched: bool) -> State:
        """hx as a tuple of (num_layers * D, B, *) tensors, zeros if not given; shapes checked."""
        LD = self.num_layers * (2 if self.bidirectional else 1)
        sizes = self._state_sizes()
        if hx is None:
            return self.zero_state(batch, like)
        states = tuple(hx) if self._has_cell else (hx,)
        if self._has_cell and len(states) != len(sizes):
            raise RuntimeError(
                f"{self._name}: Expected hx to be a tuple of {len(sizes)} tensors (h_0, c_0, ...), got {len(states)}"
            )
        want = 3 if batched else 2
        dims = tuple(s.dim() for s in states)
        if any(d != want for d in dims):
            what = "hx and cx" if self._has_cell else "hx"
            got = f"({', '.join(f'{d}-D' for d in dims)}) tensors" if self._has_cell else f"{dims[0]}-D tensor"
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
        if return_gates and self._gate_chunks <= 1:
            what = "a vanilla RNN has no gates; its hidden states are the output"
            raise ValueError(f"return_gates=True: {what if self._gate_chunks else 'a custom cell records no gates'}")
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
        route = select_route(self, data if packed else x, return_gates=return_gates)
        if route == "native":
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
            if route == "compiled":
                out_steps, hidden = run_compiled(self, steps, sizes, states)
            else:
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
        lengths = torch.as_tensor(lengths).cpu()  # packing reads them on the CPU: one copy, no GPU sync per check
        if lengths.dim() != 1 or lengths.numel() != B:
            raise ValueError(
                f"lengths must hold one length per sequence: expected shape ({B},), got {tuple(lengths.shape)}"
            )
        shortest, longest = int(lengths.min()), int(lengths.max())
        if longest > T:
            raise ValueError(
                f"lengths longer than the sequence: expected every length <= {T} "
                f"(the input's sequence length), got {longest}"
            )
        if shortest < 1:
            raise ValueError(f"expected every length >= 1, got {shortest}")
        packed = pack_padded_sequence(input, lengths, batch_first=self.batch_first, enforce_sorted=False)
        out = self.forward(packed, hx, return_gates=return_gates)
        output, _ = pad_packed_sequence(out[0], batch_first=self.batch_first, total_length=T)
        if return_gates:
            gates = {k: {n: F.pad(g, (0, 0, 0, T - g.size(1))) for n, g in v.items()} for k, v in out[2].items()}
            return output, out[1], gates
        return output, out[1]

    # -- the eager loop ----------------------------------------------------------------------

    def _recurrent_mask(self, B: int, like: Tensor) -> Tensor | None:
        """Variational dropout: one mask per sequence, (B, H_out), reused at every step."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        keep = 1.0 - self.recurrent_dropout
        H_out = self.proj_size or self.hidden_size
        return torch.bernoulli(like.new_full((B, H_out), keep)) / keep if keep > 0 else like.new_zeros(B, H_out)

    def _dropout_mask(self, layer: int, shape: tuple[int, ...], like: Tensor) -> Tensor | None:
        """Dropout between layers after ``layer``: the mask F.dropout would draw, scaled by 1 / (1 - p)."""
        if not (self.dropout > 0 and self.training and layer < self.num_layers - 1):
            return None
        keep = 1.0 - self.dropout
        # F.dropout on the CPU draws exactly this (empty, bernoulli_, then scale), so either loop
        # draws the same masks from the same seed.
        return like.new_empty(shape).bernoulli_(keep).div_(keep) if keep > 0 else like.new_zeros(shape)

    def _run_stack(self, steps: Tensor, sizes: list[int], states: State, record: bool):
        """Layers x directions over packed time-major rows, step by step (the "reference" route).

        steps (N, H_in): the rows of step t are steps[offset_t : offset_t + sizes[t]], sequences
        sorted longest first (a padded batch is the case sizes == [B] * T). Returns the top
        layer's rows (N, D * H_out), the final states and the recorded gates.
        """
        D = 2 if self.bidirectional else 1
        B = sizes[0]
        finals: list[list[Tensor]] = [[] for _ in states]
        gates: RecordedGates = {}
        layer_in: Tensor | list[Tensor] = steps
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                idx = layer * D + direction
                out, state_n, rec = run_direction(
                    self.step_function(layer, direction),
                    layer_in,
                    sizes,
                    tuple(s[idx] for s in states),
                    reverse=direction == 1,
                    mask=self._recurrent_mask(B, steps),
                    record=record,
                )
                outs.append(out)
                for k, s in enumerate(state_n):
                    finals[k].append(s)
                if record:
                    gates[f"l{layer}{'_reverse' if direction else ''}"] = rec
            dropout = self._dropout_mask(layer, (sum(sizes), D * outs[0][0].size(-1)), steps)
            if D == 1 and dropout is None and layer < self.num_layers - 1:
                layer_in = outs[0]  # the per-step rows, as they are: the next loop reads them one by one
            elif D == 1:
                layer_in = rows(outs[0])  # (N, H_out)
            else:
                layer_in = torch.cat([rows(o) for o in outs], dim=1)  # (N, 2 * H_out)
            if dropout is not None:
                layer_in = layer_in * dropout
        return rows(layer_in), tuple(torch.stack(f, 0) for f in finals), gates

    # -- what each layer supplies -----------------------------------------------------------

    _default_impl = "fused"

    def step_function(self, layer: int, direction: int = 0, *, projected: bool = False) -> Step:
        """One step of layer ``layer``, direction ``direction`` (1: backward) on this module's
        parameters: (x_t (B, H_in), state, recurrent_mask or None) -> (h_t (B, H_out), new state,
        the step's named result or None). What every route but torch's kernel runs, and what
        ``seqlab.diagnostics.gradflow`` unrolls. ``projected=True``: the step takes
        ``input_function(layer, direction)(x)``'s row for step t (B, G) in place of x_t."""
        return self._reference_step(self._weights(layer, "_reverse" if direction else ""), projected)

    def input_function(self, layer: int, direction: int = 0) -> Callable[[Tensor], Tensor] | None:
        """The steps' input term (equations.input_term: X W_x + b_x) for all steps at once,
        (T, B, H_in) -> (T, B, G); None for a cell that has none (a custom cell)."""
        return self._input_term(self._weights(layer, "_reverse" if direction else ""))

    def _input_term(self, w: Weights) -> Callable[[Tensor], Tensor]:
        return lambda x: input_term(x, w["w_ih"], w["b_ih"])

    def _reference_step(self, w: Weights, projected: bool = False) -> Step:
        """This layer's function from equations.py on one (layer, direction)'s weights, as it is."""
        raise NotImplementedError

    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

"""Your own recurrent cell as a full layer: write one step in plain PyTorch, get the rest.

A cell is an ``nn.Module`` built as ``cell(input_size, hidden_size)`` whose forward is one time
step, ``(x_t, state) -> (h_t, new_state)``:

    x_t (B, H_in); state: h (B, H) for a cell with one state tensor, else a tuple (h, c, ...),
    each (B, H), as many as the cell's ``num_states`` (class attribute, default 1);
    h_t (B, H): the step's output; new_state: like state.

:class:`Recurrent` builds one cell per layer and direction and gives them torch.nn.LSTM's
interface: ``batch_first``, ``num_layers``, ``bidirectional``, ``dropout`` between layers,
initial state in and final state out (so truncated BPTT works as for the built-in layers),
``lengths=`` and ``PackedSequence`` input, and gradient-flow diagnostics (``seqlab plot``
unrolls the cell's step). With ``impl="auto"`` (default) the steps run compiled
(``compiled.py``), or eagerly where torch.compile is unavailable.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .base import _RecurrentBase
from .layers import _INPUT, _OUTPUT, _WHERE
from .loop import Step


class Recurrent(_RecurrentBase):
    __doc__ = f"""A recurrent layer over any cell: ``cell(input_size, hidden_size)`` -> an nn.Module
    whose forward is one step, (x_t (N, H_in), state) -> (h_t (N, H), new_state).

    Example, a peephole LSTM (Gers & Schmidhuber 2000): examples/custom_cell.py.

    Args:
        cell: the cell's class (or any callable (input_size, hidden_size) -> nn.Module). Its
            ``num_states`` attribute (default 1) is how many (N, H) tensors its state holds; with
            one, state is that tensor, else a tuple of them.
        input_size, hidden_size, num_layers=1, batch_first=False, dropout=0.0,
        bidirectional=False, device=None, dtype=None: as torch.nn.LSTM. Layer k > 0 gets cells
            of input size D * hidden_size.
        impl (keyword-only): "auto" (default) or "compiled": the steps compiled with
            torch.compile (the eager loop where it is unavailable); "reference" or "fused": the
            steps one at a time, eagerly.

    Inputs: input, state_0
        {_INPUT}
        * **state_0**: (D * num_layers, N, H), or a tuple of num_states of them; zeros if not given.
        * **lengths** (keyword-only): (N,), the valid steps of each sequence of a padded batch.

    Outputs: output, state_n
        {_OUTPUT}
        * **state_n**: like state_0, every layer's and direction's final state.

    {_WHERE} (H_cell = H_out = hidden_size.)

    Parameters: the cells', as ``cells.{{layer * D + direction}}.*``.
    """

    _gate_chunks, _has_native = 0, False
    _default_impl = "auto"

    def __init__(
        self,
        cell: Callable[[int, int], nn.Module],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        impl: str = "auto",
    ) -> None:
        if not callable(cell):
            raise TypeError(f"cell must be a class or callable (input_size, hidden_size) -> nn.Module, got {cell!r}")
        self._make_cell = cell
        super().__init__(
            "custom",
            input_size,
            hidden_size,
            num_layers,
            True,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
            impl=impl,
        )

    def _build_parameters(self, factory: dict) -> None:
        D = 2 if self.bidirectional else 1
        cells = []
        for layer in range(self.num_layers):
            for _ in range(D):
                cell = self._make_cell(self.input_size if layer == 0 else D * self.hidden_size, self.hidden_size)
                if not isinstance(cell, nn.Module):
                    raise TypeError(
                        f"cell(input_size, hidden_size) must return an nn.Module, got {type(cell).__name__}"
                    )
                cells.append(cell.to(**{k: v for k, v in factory.items() if v is not None}))
        self.cells = nn.ModuleList(cells)
        self.num_states = int(getattr(cells[0], "num_states", 1))
        self._has_cell = self.num_states > 1  # the state is a tuple
        self._flat_weights_names, self._all_weights = [], []

    def reset_parameters(self) -> None:
        for cell in self.cells:
            if hasattr(cell, "reset_parameters"):
                cell.reset_parameters()

    def _state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,) * self.num_states

    def extra_repr(self) -> str:
        return f"{getattr(self._make_cell, '__name__', 'cell')}, " + super().extra_repr()

    def input_function(self, layer: int, direction: int = 0) -> None:
        return None  # the cell's forward reads x_t itself: no input term to compute ahead

    def step_function(self, layer: int, direction: int = 0) -> Step:
        cell = self.cells[layer * (2 if self.bidirectional else 1) + direction]
        single = self.num_states == 1

        def step(x_t, state, mask):
            h_t, new = cell(x_t, state[0] if single else state)
            return h_t, ((new,) if single else tuple(new)), None

        return step

"""RNN, LSTM, GRU and LayerNormLSTM written from the lecture's equations, drop-in for ``torch.nn``.

Read it in this order:

- ``equations.py``: one time step of each cell (:func:`rnn_step`, :func:`lstm_step`,
  :func:`gru_step`, :func:`layernorm_lstm_step`), plain PyTorch. ``impl="reference"`` runs them.
- ``cells.py``: RNNCell, LSTMCell, GRUCell (one step, torch.nn's cell interface).
- ``layers.py``: RNN, LSTM, GRU (torch.nn's layer interface: parameters, inputs and outputs,
  packing, stacking) and :func:`select_path`, the one place that decides what runs;
  ``layernorm_lstm.py``: LayerNormLSTM; ``loop.py``: one direction of one layer over time.
- ``init.py``: :func:`init_recurrent_`, forget-gate bias, chrono and orthogonal initialisation.
- ``fast/``: seqlab's own fused recurrence and inference steps, tested equal to the equations.
- ``torch_internals.py``: every private torch call (``torch._VF``, oneDNN ops, cuDNN weight
  flattening), so a torch upgrade is checked in one place.

Beyond torch: ``recurrent_dropout`` (variational dropout), ``forward(..., lengths=)`` for padded
variable-length batches, ``forward(..., return_gates=True)`` for every gate's activations, and
LayerNormLSTM. Class docstrings are the shape contracts (``help(seqlab.nn.LSTM)``).
"""

from .cells import IMPLS, GRUCell, LSTMCell, RNNCell, _CellBase, check_impl
from .equations import Gates, GRUStep, LSTMStep, gru_step, layernorm_lstm_step, lstm_step, recurrent_input, rnn_step
from .init import INITS, chrono_bias, init_recurrent_
from .layernorm_lstm import LayerNormLSTM
from .layers import GRU, LSTM, RNN, Path, _RecurrentBase, detach_state, select_path
from .loop import InferenceStep, RecordedGates, State, Step, StepResult, Weights, rows, run_direction

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "LayerNormLSTM",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "detach_state",
    "rnn_step",
    "lstm_step",
    "gru_step",
    "layernorm_lstm_step",
    "LSTMStep",
    "GRUStep",
    "IMPLS",
    "select_path",
    "Path",
    "State",
    "Gates",
    "RecordedGates",
    "Step",
    "StepResult",
    "InferenceStep",
    "Weights",
    "recurrent_input",
    "run_direction",
    "rows",
    "check_impl",
    "init_recurrent_",
    "chrono_bias",
    "INITS",
]

# The names seqlab/nn/recurrent.py had before it became this package (issue 15), under their
# new homes, so that `from seqlab.nn.recurrent import _ifog` etc. keep working.
from .fast.backward import DOUBLE_BACKWARD as _DOUBLE_BACKWARD  # noqa: E402
from .fast.backward import BatchedWeightGrad as _BatchedWeightGrad  # noqa: E402
from .fast.backward import batched_weight_grad as _batched_weight_grad  # noqa: E402
from .fast.backward import first_order_only as _first_order_only  # noqa: E402
from .fast.fused import _IFOG  # noqa: E402
from .fast.fused import ifog as _ifog  # noqa: E402
from .fast.inference import candidate_times_minus_2_ as _candidate_times_minus_2_  # noqa: E402
from .fast.ops import PackedWeight as _PackedWeight  # noqa: E402
from .fast.ops import linear, tanh  # noqa: E402
from .fast.ops import mm_at_b as _mm_at_b  # noqa: E402
from .fast.ops import packed_linear as _linear  # noqa: E402
from .torch_internals import autocast_enabled as _autocast_enabled  # noqa: E402
from .torch_internals import onednn_usable as _onednn_usable  # noqa: E402
from .torch_internals import plain_autograd_only as _plain_autograd_only  # noqa: E402

_check_impl, _recurrent_input, _rows, _recur = check_impl, recurrent_input, rows, run_direction

_REMOVED = {
    "_fused_lstm_gates": "fast.fused.lstm_cell_update, which returns the gates as named fields "
    "(the old positional (f, i, g, c, o) 5-tuple is gone; an alias would reorder them silently)",
    "_lstm_gates": "equations.LSTMStep(...).gates()",
}


def __getattr__(name: str):
    if name in _REMOVED:
        raise AttributeError(f"seqlab.nn.recurrent.{name} was removed (issue 15); use {_REMOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

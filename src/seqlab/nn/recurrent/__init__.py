"""RNN, LSTM, GRU and LayerNormLSTM written from the lecture's equations, drop-in for ``torch.nn``.

Read it in this order:

- ``equations.py``: one time step of each cell (:func:`rnn_step`, :func:`lstm_step`,
  :func:`gru_step`, :func:`layernorm_lstm_step`), plain PyTorch. Every route but torch's own
  kernel runs exactly these.
- ``cells.py``: RNNCell, LSTMCell, GRUCell (one step, torch.nn's cell interface).
- ``layers.py``: RNN, LSTM, GRU (torch.nn's layer interface); ``layernorm_lstm.py``:
  LayerNormLSTM; ``custom.py``: :class:`Recurrent`, a full layer from your own step function.
- ``base.py``: what they share (inputs and outputs, packing, stacking, state);
  ``routes.py``: :func:`select_route`, the one place that decides what runs: torch's kernel,
  ``compiled.py`` (the steps unrolled and compiled with torch.compile) or ``loop.py`` (the steps
  one at a time, eagerly).
- ``init.py``: :func:`init_recurrent_`, forget-gate bias, chrono and orthogonal initialisation.

Every private torch call (``torch._VF``, cuDNN weight flattening, compile checks) is in
``seqlab/torch_internals.py``, so a torch upgrade is checked in one place.

Beyond torch: ``recurrent_dropout`` (variational dropout), ``forward(..., lengths=)`` for padded
variable-length batches, ``forward(..., return_gates=True)`` for every gate's activations, and
LayerNormLSTM. Class docstrings are the shape contracts (``help(seqlab.nn.LSTM)``).
"""

from .base import _RecurrentBase
from .cells import GRUCell, LSTMCell, RNNCell, _CellBase
from .custom import Recurrent
from .equations import Gates, GRUStep, LSTMStep, gru_step, layernorm_lstm_step, lstm_step, recurrent_input, rnn_step
from .init import INITS, chrono_bias, init_recurrent_
from .layernorm_lstm import LayerNormLSTM
from .layers import GRU, LSTM, RNN, detach_state
from .loop import RecordedGates, State, Step, StepResult, Weights, rows, run_direction
from .routes import IMPLS, CompileUnavailableWarning, Route, check_impl, select_route

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "LayerNormLSTM",
    "Recurrent",
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
    "select_route",
    "Route",
    "CompileUnavailableWarning",
    "State",
    "Gates",
    "RecordedGates",
    "Step",
    "StepResult",
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
# new homes, so that `from seqlab.nn.recurrent import _rows` etc. keep working.
_check_impl, _recurrent_input, _rows, _recur = check_impl, recurrent_input, rows, run_direction

_FUSED_OWN = "fused_own was retired (issue 24): impl='compiled' runs the equations at its speed or better"
_REMOVED = {
    "_fused_lstm_gates": "equations.LSTMStep(...).gates(), which returns the gates as named fields "
    "(the old positional (f, i, g, c, o) 5-tuple is gone; an alias would reorder them silently)",
    "_lstm_gates": "equations.LSTMStep(...).gates()",
    "select_path": "select_route (issue 24), which returns 'native', 'compiled' or 'reference'",
    "Path": "Route (issue 24)",
    **{
        name: _FUSED_OWN
        for name in """_DOUBLE_BACKWARD _BatchedWeightGrad _batched_weight_grad _first_order_only _IFOG _ifog
        _candidate_times_minus_2_ _PackedWeight linear tanh _mm_at_b _linear _autocast_enabled _onednn_usable
        _plain_autograd_only InferenceStep""".split()
    },
}


def __getattr__(name: str):
    if name in _REMOVED:
        raise AttributeError(f"seqlab.nn.recurrent.{name} was removed; {_REMOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

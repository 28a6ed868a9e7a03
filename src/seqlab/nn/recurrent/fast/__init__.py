"""seqlab's own fast recurrence: the same equations rearranged for speed, tested equal to them.

- ``fused.py``: the training-time loop of ``impl="fused_own"`` (input projections of all steps
  in one GEMM, oneDNN multiplies with packed weights, gates fused), per cell.
- ``inference.py``: the LSTMs' steps without autograd (one oneDNN GEMM per step with the gate
  sigmoid fused in, h_t written into one output block).
- ``backward.py``: the fused loop's first-order backward, dW_hh as one GEMM after the loop.
- ``ops.py``: ``linear`` and ``tanh`` with F.linear's and torch.tanh's numbers, faster on CPU.

The oneDNN ops they reach are called through ``..torch_internals``.
"""

from .fused import fused_gru, fused_layernorm_lstm, fused_lstm, fused_rnn
from .inference import layernorm_lstm_inference_step, lstm_inference_step

__all__ = [
    "fused_rnn",
    "fused_lstm",
    "fused_gru",
    "fused_layernorm_lstm",
    "lstm_inference_step",
    "layernorm_lstm_inference_step",
]

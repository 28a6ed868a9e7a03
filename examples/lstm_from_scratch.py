"""An LSTM from scratch, d2l style: the lecture's step function looped over the time steps of a batch.

    python examples/lstm_from_scratch.py

``lstm_step`` is the equations (forget gate, input gate, candidate, cell update, output gate) in
plain PyTorch; seqlab.nn.LSTM(impl="reference") runs the same loop, and tests/test_examples.py
checks that the two give the same numbers.
"""

import torch

import seqlab.nn as snn
from seqlab.nn import lstm_step


def lstm(X, state, params):
    """X (T, B, H_in) time-major; state (H, C), each (B, H); params (W_xh, W_hh, b_xh, b_hh) in torch's layout.

    Returns the hidden state of every step (T, B, H) and the final state (H_T, C_T).
    """
    H, C = state
    outputs = []
    for X_t in X:  # X_t (B, H_in): one time step of every sequence of the batch
        step = lstm_step(X_t, H, C, *params)  # the gates and the new (H, C)
        H, C = step.h, step.c
        outputs.append(H)
    return torch.stack(outputs), (H, C)  # (T, B, H)


if __name__ == "__main__":
    T, B, H_in, H = 6, 4, 3, 5
    torch.manual_seed(0)
    X = torch.randn(T, B, H_in)
    state = (torch.zeros(B, H), torch.zeros(B, H))
    layer = snn.LSTM(H_in, H, impl="reference")
    params = (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
    Y, (H_T, C_T) = lstm(X, state, params)
    Y_layer, (h_n, c_n) = layer(X)
    print(f"outputs {tuple(Y.shape)}; largest difference to seqlab.nn.LSTM: {(Y - Y_layer).abs().max().item():.1e}")

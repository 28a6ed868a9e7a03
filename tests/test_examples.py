"""The examples run, and compute what they say they compute."""

from __future__ import annotations

import runpy
from pathlib import Path

import torch

import seqlab.nn as snn

from tolerance import assert_close

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_lstm_from_scratch_equals_the_reference_layer(capsys):
    """The d2l-style loop over lstm_step gives seqlab.nn.LSTM(impl="reference")'s outputs and final
    state bit for bit (the layer runs the same step function), and gradients equal to 1e-6."""
    lstm = runpy.run_path(str(EXAMPLES / "lstm_from_scratch.py"))["lstm"]
    torch.manual_seed(0)
    T, B, H_in, H = 7, 3, 4, 5
    X = torch.randn(T, B, H_in)
    h0, c0 = torch.randn(1, B, H), torch.randn(1, B, H)
    layer = snn.LSTM(H_in, H, impl="reference")
    params = (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
    Y, (H_T, C_T) = lstm(X, (h0[0], c0[0]), params)
    Y_layer, (h_n, c_n) = layer(X, (h0, c0))
    assert Y.shape == (T, B, H)
    assert torch.equal(Y, Y_layer) and torch.equal(H_T, h_n[0]) and torch.equal(C_T, c_n[0])
    ours = torch.autograd.grad((Y * Y_layer.detach()).sum() + C_T.sum(), params)
    theirs = torch.autograd.grad((Y_layer * Y.detach()).sum() + c_n.sum(), params)
    assert_close(ours, theirs, "grads (W_ih, W_hh, b_ih, b_hh)", atol=1e-6)
    # and the layer is torch's LSTM: the example computes torch.nn.LSTM too
    torch_lstm = torch.nn.LSTM(H_in, H)
    torch_lstm.load_state_dict(layer.state_dict())
    assert_close(torch_lstm(X, (h0, c0))[0], Y, "torch.nn.LSTM's output")

    runpy.run_path(str(EXAMPLES / "lstm_from_scratch.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.startswith("outputs (6, 4, 5); largest difference to seqlab.nn.LSTM: 0.0e+00")

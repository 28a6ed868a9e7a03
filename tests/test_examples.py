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


def test_custom_cell_is_an_lstm_with_peepholes_and_trains():
    """examples/custom_cell.py: with its peepholes at zero the cell is the LSTM step (lstm_step on
    the same weights); with them it differs; run as a layer it trains on the digits preset above
    chance (eager here: test_recurrent_compiled.py checks compiled custom cells equal eager)."""
    example = runpy.run_path(str(EXAMPLES / "custom_cell.py"))
    cell = example["PeepholeLSTMCell"](3, 4)
    gen = torch.Generator().manual_seed(0)
    x, h, c = torch.randn(2, 3, generator=gen), torch.randn(2, 4, generator=gen), torch.randn(2, 4, generator=gen)
    W, b = cell.gates.weight, cell.gates.bias
    step = snn.lstm_step(x, h, c, W[:, :3], W[:, 3:], b, None)
    h_t, (h_new, c_new) = cell(x, (h, c))
    assert_close((h_t, c_new), (step.h, step.c), "zero peepholes = LSTM step")
    assert h_t is h_new
    with torch.no_grad():
        cell.peep.fill_(0.5)
    assert (cell(x, (h, c))[0] - step.h).abs().max() > 1e-3
    summary = example["train"](40, "reference")
    assert summary["best_val/accuracy"] > 0.2  # ten classes: chance is 0.1

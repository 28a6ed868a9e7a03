"""torch.compile runs seqlab's own recurrence (LayerNormLSTM, the fused path's fallback for
variational dropout) with the eager module's outputs and gradients. Kept tiny: compiling is slow."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch._inductor.config

import seqlab.nn as snn

from tolerance import assert_close

pytestmark = pytest.mark.slow  # compiling takes ~30 s of the suite


def _outputs_and_grads(module, x, hx):
    torch.manual_seed(3)  # the dropout masks
    y, (h_n, c_n) = module(x, hx)
    w = torch.Generator().manual_seed(4)  # random loss weights keep the gradients O(1)
    loss = sum((torch.randn(t.shape, generator=w) * t).sum() for t in (y, h_n, c_n))
    return (y, h_n, c_n), torch.autograd.grad(loss, list(module.parameters()))


@pytest.mark.parametrize(
    "make",
    [
        lambda: snn.LayerNormLSTM(3, 4, batch_first=True),
        lambda: snn.LSTM(3, 4, batch_first=True, recurrent_dropout=0.3),  # "fused" falls back to its own loop
    ],
    ids=["layernorm_lstm", "lstm_recurrent_dropout"],
)
def test_compiled_equals_eager(make):
    torch.manual_seed(0)
    module = make().train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 3, generator=gen)
    # A random initial state: LayerNormLSTM would otherwise normalise an all-zero W_hh h_0.
    hx = (torch.randn(1, 2, 4, generator=gen), torch.randn(1, 2, 4, generator=gen))
    outs, grads = _outputs_and_grads(module, x, hx)
    torch._dynamo.reset()
    # inductor draws its own random numbers unless told to use eager's generator; with it the
    # variational dropout mask is the one eager draws from the same seed.
    with torch._inductor.config.patch(fallback_random=True):
        outs_c, grads_c = _outputs_and_grads(torch.compile(module), x, hx)
    if module.recurrent_dropout:  # the mask did something, so equal outputs mean the same mask
        torch.manual_seed(3)
        assert (module.eval()(x, hx)[0] - outs[0]).abs().max() > 1e-3
    assert_close(outs_c, outs, "(y, h_n, c_n) compiled")
    assert_close(grads_c, grads, "parameter grads compiled")

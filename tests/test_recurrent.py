"""seqlab.nn's RNN, LSTM, GRU and cells against torch.nn: weights copied both ways, float32,
max abs difference <= 1e-5 for outputs, final states and every gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqlab.nn as snn

from tolerance import assert_close

I, H, P, T, B = 5, 6, 4, 5, 3

# name -> (seqlab class, torch class, extra constructor args)
MODES = {
    "rnn_tanh": (snn.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (snn.RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (snn.LSTM, nn.LSTM, {}),
    "lstm_proj": (snn.LSTM, nn.LSTM, {"proj_size": P}),
    "gru": (snn.GRU, nn.GRU, {}),
}

# A covering grid rather than the full product: every value of every axis appears, with
# layers, directions, layouts, bias, input kinds and initial states mixed across rows.
# (num_layers, bidirectional, batch_first, bias, input kind, initial state, dropout)
CONFIGS = [
    (1, False, False, True, "batched", False, 0.0),
    (2, True, True, True, "batched", True, 0.5),
    (3, False, True, False, "packed", True, 0.0),
    (2, True, False, True, "packed", False, 0.0),
    (1, True, True, False, "unbatched", True, 0.0),
    (3, True, False, True, "batched", False, 0.0),
    (2, False, True, True, "unbatched", False, 0.0),
]


def _states(s):
    return s if isinstance(s, tuple) else (s,)


def _build(mode, cfg, impl):
    scls, tcls, extra = MODES[mode]
    L, bidir, batch_first, bias, _, _, dropout = cfg
    kw = dict(num_layers=L, bidirectional=bidir, batch_first=batch_first, bias=bias, dropout=dropout, **extra)
    return scls(I, H, impl=impl, **kw), tcls(I, H, **kw)


def _inputs(mode, cfg, gen):
    L, bidir, batch_first, _, kind, with_h0, _ = cfg
    D = 2 if bidir else 1
    H_out = P if mode == "lstm_proj" else H
    if kind == "unbatched":
        x = torch.randn(T, I, generator=gen)
        shape = (L * D, H_out)
        c_shape = (L * D, H)
    else:
        x = torch.randn((B, T, I) if batch_first else (T, B, I), generator=gen)
        shape, c_shape = (L * D, B, H_out), (L * D, B, H)
    x.requires_grad_(True)
    hx = None
    if with_h0:
        h0 = torch.randn(shape, generator=gen).requires_grad_(True)
        hx = (h0, torch.randn(c_shape, generator=gen).requires_grad_(True)) if mode.startswith("lstm") else h0
    return x, hx


def _run(module, x, hx, kind, batch_first):
    if kind == "packed":
        lengths = torch.tensor([4, T, 2])  # unsorted on purpose: exercises sorted/unsorted indices
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, state = module(packed, hx)
        return out.data, _states(state), out
    out, state = module(x, hx)
    return out, _states(state), None


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "L{}-bi{}-bf{}-bias{}-{}-h0{}-do{}".format(*c))
@pytest.mark.parametrize("mode", list(MODES))
def test_parity_with_torch(mode, cfg, impl):
    kind, batch_first = cfg[4], cfg[2]
    ours, theirs = _build(mode, cfg, impl)
    # torch -> seqlab: same names and shapes, so a strict load works.
    ours.load_state_dict(theirs.state_dict())
    # Eval: dropout between layers is then off in both (its random masks cannot match).
    ours.train(cfg[6] == 0.0)
    theirs.train(cfg[6] == 0.0)

    gen = torch.Generator().manual_seed(0)
    x, hx = _inputs(mode, cfg, gen)
    y_ref, s_ref, packed_ref = _run(theirs, x, hx, kind, batch_first)
    y, s, packed = _run(ours, x, hx, kind, batch_first)

    assert_close(y, y_ref, "output")
    assert_close(s, s_ref, "final state")
    if packed is not None:
        assert torch.equal(packed.batch_sizes, packed_ref.batch_sizes)
        assert torch.equal(packed.sorted_indices, packed_ref.sorted_indices)
        assert torch.equal(packed.unsorted_indices, packed_ref.unsorted_indices)

    # Gradients of a loss touching the output and every final state.
    weights = [torch.randn(t.shape, generator=gen) for t in (y, *s)]
    inputs = [x, *(_states(hx) if hx is not None else ())]

    def grads(module, y, s):
        loss = sum((w * t).sum() for w, t in zip(weights, (y, *s)))
        params = [p for _, p in sorted(module.named_parameters())]
        return torch.autograd.grad(loss, params + inputs)

    g_ref = grads(theirs, y_ref, s_ref)
    g = grads(ours, y, s)
    names = [f"grad {n}" for n, _ in sorted(ours.named_parameters())] + ["grad x", "grad h0", "grad c0"][: len(inputs)]
    for name, a, b in zip(names, g, g_ref, strict=True):
        assert_close(a, b, name)

    # seqlab -> torch: a freshly initialised seqlab layer loads into torch's.
    fresh, target = _build(mode, cfg, impl)
    target.load_state_dict(fresh.state_dict())
    for (n1, p1), (n2, p2) in zip(fresh.named_parameters(), target.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "L{}-bi{}-bf{}-bias{}-{}-h0{}-do{}".format(*c))
@pytest.mark.parametrize("mode", ["lstm", "lstm_proj"])
def test_inference_parity_with_torch(mode, cfg):
    """Without autograd, the reference loop (the equations step by step): torch.nn's outputs and states."""
    kind, batch_first = cfg[4], cfg[2]
    ours, theirs = _build(mode, cfg, "reference")
    ours.load_state_dict(theirs.state_dict())
    ours.eval(), theirs.eval()
    x, hx = _inputs(mode, cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        y_ref, s_ref, _ = _run(theirs, x, hx, kind, batch_first)
        y, s, _ = _run(ours, x, hx, kind, batch_first)
    assert_close(y, y_ref, "output")
    assert_close(s, s_ref, "final state")


@pytest.mark.parametrize("mode", list(MODES))
def test_same_parameters_and_default_init_as_torch(mode):
    scls, tcls, extra = MODES[mode]
    kw = dict(num_layers=2, bidirectional=True, **extra)
    torch.manual_seed(3)
    theirs = tcls(I, H, **kw)
    torch.manual_seed(3)
    ours = scls(I, H, **kw)
    names = [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == names
    assert "weight_hh_l1_reverse" in names
    # Same registration order and U(-1/sqrt(H), 1/sqrt(H)), so the same seed gives the same values.
    for (_, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert p.shape == q.shape and torch.equal(p, q)
    bound = H**-0.5
    assert all(p.abs().max() <= bound for p in ours.parameters())


@pytest.mark.parametrize("cls", [snn.LSTM, snn.LayerNormLSTM])
def test_flatten_parameters_leaves_cpu_parameters_alone(cls, monkeypatch):
    """cuDNN's flat buffer is for CUDA only (the CUDA branch is torch's logic, untested here):
    on CPU flatten_parameters() and .to() keep every parameter's storage and values, and never
    reach the cuDNN flattening op."""
    calls = []
    monkeypatch.setattr(torch, "_cudnn_rnn_flatten_weight", lambda *a: calls.append(a))
    layer = cls(I, H, num_layers=2, bidirectional=True)
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in layer.named_parameters()}
    layer.flatten_parameters()
    assert all(p.data_ptr() == before[n][0] and torch.equal(p, before[n][1]) for n, p in layer.named_parameters())
    layer.double()
    assert all(p.dtype == torch.float64 and torch.equal(p, before[n][1].double()) for n, p in layer.named_parameters())
    assert calls == []


def test_positional_arguments_follow_torch():
    # RNN's fourth positional argument is the nonlinearity, LSTM's is bias, as in torch.
    rnn = snn.RNN(I, H, 2, "relu", False, True)
    assert (rnn.num_layers, rnn.nonlinearity, rnn.bias, rnn.batch_first) == (2, "relu", False, True)
    lstm = snn.LSTM(I, H, 1, False, True, 0.0, True, 3)
    assert (lstm.bias, lstm.batch_first, lstm.bidirectional, lstm.proj_size) == (False, True, True, 3)
    assert snn.LSTM(I, H).impl == "fused"


CELLS = {
    "rnn_tanh": (snn.RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (snn.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (snn.LSTMCell, nn.LSTMCell, {}),
    "gru": (snn.GRUCell, nn.GRUCell, {}),
}


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize(
    "bias,batched,with_h0", [(True, True, True), (False, True, False), (True, False, True), (False, False, False)]
)
@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_parity_with_torch(cell, bias, batched, with_h0, impl):
    scls, tcls, extra = CELLS[cell]
    torch.manual_seed(1)
    theirs = tcls(I, H, bias=bias, **extra)
    ours = scls(I, H, bias=bias, impl=impl, **extra)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict())
    gen = torch.Generator().manual_seed(2)
    lead = (B,) if batched else ()
    x = torch.randn(*lead, I, generator=gen, requires_grad=True)
    hx = None
    if with_h0:
        h = torch.randn(*lead, H, generator=gen, requires_grad=True)
        hx = (h, torch.randn(*lead, H, generator=gen, requires_grad=True)) if cell == "lstm" else h
    out_ref, out = _states(theirs(x, hx)), _states(ours(x, hx))
    assert_close(out, out_ref, "cell output")
    inputs = [x, *(_states(hx) if hx is not None else ())]
    weights = [torch.randn(t.shape, generator=gen) for t in out]
    g_ref = torch.autograd.grad(
        sum((w * t).sum() for w, t in zip(weights, out_ref)), list(theirs.parameters()) + inputs
    )
    g = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, out)), list(ours.parameters()) + inputs)
    names = [f"grad {n}" for n, _ in ours.named_parameters()] + ["grad x", "grad h0", "grad c0"][: len(inputs)]
    for name, a, b in zip(names, g, g_ref, strict=True):
        assert_close(a, b, name)


# ---- errors say what was expected and what was got, in torch's words where torch has them ----


def _torch_message(fn):
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_error_messages_match_torch(impl):
    ours, theirs = snn.LSTM(I, H, 2, impl=impl), nn.LSTM(I, H, 2)
    x_wrong_features = torch.randn(T, B, I + 1)
    x_4d = torch.randn(T, B, 1, I)
    x = torch.randn(T, B, I)
    bad_state = (torch.zeros(1, B, H), torch.zeros(2, B, H))
    bad_cell = (torch.zeros(2, B, H), torch.zeros(2, B + 1, H))
    for call in (lambda m: m(x_wrong_features), lambda m: m(x_4d), lambda m: m(x, bad_state), lambda m: m(x, bad_cell)):
        assert _torch_message(lambda: call(ours)) == _torch_message(lambda: call(theirs))
    with pytest.raises(RuntimeError, match=r"Expected 5, got 6"):
        ours(x_wrong_features)
    with pytest.raises(ValueError, match="LSTM: Expected input to be 2D or 3D, got 4D instead"):
        ours(x_4d)
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(2, 3, 6\), got \[1, 3, 6\]"):
        ours(x, bad_state)
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size \(2, 3, 6\), got \[2, 4, 6\]"):
        ours(x, bad_cell)


def test_gru_and_rnn_hidden_errors_match_torch():
    x = torch.randn(B, T, I)
    for scls, tcls in ((snn.GRU, nn.GRU), (snn.RNN, nn.RNN)):
        ours, theirs = scls(I, H, batch_first=True), tcls(I, H, batch_first=True)
        for h in (torch.zeros(1, B + 2, H), torch.zeros(1, B, H + 1), torch.zeros(B, H)):
            assert _torch_message(lambda: ours(x, h)) == _torch_message(lambda: theirs(x, h))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 3, 6\), got \[1, 5, 6\]"):
        snn.GRU(I, H, batch_first=True)(x, torch.zeros(1, B + 2, H))


def test_lengths_longer_than_the_sequence():
    lstm = snn.LSTM(I, H, batch_first=True)
    x = torch.randn(B, T, I)
    with pytest.raises(ValueError, match=r"lengths longer than the sequence: expected every length <= 5 .*got 7"):
        lstm(x, lengths=torch.tensor([3, 7, 2]))
    with pytest.raises(ValueError, match=r"expected shape \(3,\), got \(2,\)"):
        lstm(x, lengths=torch.tensor([3, 2]))
    with pytest.raises(ValueError, match="expected every length >= 1, got 0"):
        lstm(x, lengths=torch.tensor([3, 0, 2]))


def test_cell_errors():
    cell = snn.LSTMCell(I, H)
    with pytest.raises(RuntimeError, match="Expected 5, got 4"):
        cell(torch.randn(B, I - 1))
    with pytest.raises(ValueError, match="LSTMCell: Expected input to be 1D or 2D, got 3D instead"):
        cell(torch.randn(1, B, I))
    with pytest.raises(RuntimeError, match=r"Expected hx\[0\] size \(3, 6\), got \[2, 6\]"):
        cell(torch.randn(B, I), (torch.zeros(2, H), torch.zeros(B, H)))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(3, 6\), got \[3, 7\]"):
        snn.GRUCell(I, H)(torch.randn(B, I), torch.zeros(B, H + 1))


def test_constructor_errors():
    with pytest.raises(ValueError, match="impl must be one of 'auto', 'fused', 'compiled', 'reference', got 'fast'"):
        snn.LSTM(I, H, impl="fast")
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        snn.RNN(I, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        snn.LSTM(I, H, proj_size=H)
    with pytest.raises(ValueError, match=r"recurrent_dropout should be a number in range \[0, 1\].*got 1.5"):
        snn.GRU(I, H, recurrent_dropout=1.5)
    with pytest.raises(ValueError, match="input dtype"):
        snn.GRU(I, H)(torch.randn(T, B, I, dtype=torch.float64))

"""What torch does not have: reference vs fused (torch's kernel) agreement for every variant with
a kernel, variational dropout, LayerNormLSTM against the paper's equations in float64, gate
recording, gradcheck on the reference steps, lengths=, detach_state, parameter counts, and the
classifier built on seqlab.nn."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqlab.nn as snn
from seqlab.config import ConfigError, from_dict
from seqlab.models import ClassifierConfig, SequenceClassifier
from seqlab.utils import count_parameters

from tolerance import assert_close

I, H, T, B = 4, 5, 6, 3

VARIANTS = {
    "rnn": (snn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (snn.RNN, {"nonlinearity": "relu"}),
    "lstm": (snn.LSTM, {}),
    "lstm_proj": (snn.LSTM, {"proj_size": 3}),
    "gru": (snn.GRU, {}),
    "layernorm_lstm": (snn.LayerNormLSTM, {}),
}


def _states(s):
    return s if isinstance(s, tuple) else (s,)


def _grad_scale(grads) -> float:
    """max(1, largest |gradient| of any parameter)."""
    return max(1.0, max(g.abs().max().item() for g in grads))


def _run_impls(
    variant,
    dropout,
    recurrent_dropout,
    packed,
    dtype=torch.float32,
    grad=True,
    bidirectional=True,
    impls=("reference", "fused"),
    num_layers=2,
):
    """Outputs, states and parameter gradients of each impl, same weights and same dropout seed.
    grad=False: the forward under torch.no_grad(), no gradients."""
    cls, extra = VARIANTS[variant]
    # LayerNormLSTM normalises 4H features: at H=5 a row of 20 can have a tiny spread, and the
    # norm's 1/std then blows float32 rounding up past any useful tolerance; H=8 is tame.
    n_in, n_hid = (8, 8) if variant == "layernorm_lstm" else (I, H)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, n_in, generator=gen, dtype=dtype)
    lengths = torch.tensor([3, T, 2])
    # A random initial state: from h_0 = 0 LayerNormLSTM would normalise an all-zero W_hh h_0,
    # whose gradient is 1/sqrt(eps) times larger and would swamp float32 comparisons.
    H_out, n_states = extra.get("proj_size", n_hid), num_layers * (2 if bidirectional else 1)
    h0 = torch.randn(n_states, B, H_out, generator=gen, dtype=dtype)
    hx = (h0, torch.randn(n_states, B, n_hid, generator=gen, dtype=dtype)) if "lstm" in variant else h0
    results = {}
    for impl in impls:
        torch.manual_seed(0)
        layer = cls(
            n_in,
            n_hid,
            num_layers=num_layers,
            bidirectional=bidirectional,
            batch_first=True,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            impl=impl,
            **extra,
        ).to(dtype)
        torch.manual_seed(7)  # the dropout masks
        inp = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False) if packed else x
        with torch.set_grad_enabled(grad):
            y, s = layer(inp, hx)
        y = y.data if packed else y
        if not grad:
            results[impl] = (y, _states(s), ())
            continue
        w = torch.Generator().manual_seed(2)  # the same random loss weights for every impl
        loss = sum((torch.randn(t.shape, generator=w, dtype=dtype) * t).sum() for t in (y, *_states(s)))
        grads = torch.autograd.grad(loss, list(layer.parameters()))
        results[impl] = (y, _states(s), grads)
    return results


# The variants with a torch kernel behind impl="fused"; LayerNormLSTM has none ("fused" is its reference).
NATIVE_VARIANTS = [v for v in VARIANTS if v != "layernorm_lstm"]


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("dropouts", [(0.0, 0.0), (0.3, 0.4)], ids=["no-dropout", "dropout+variational"])
@pytest.mark.parametrize("variant", NATIVE_VARIANTS)
def test_reference_and_fused_agree(variant, dropouts, packed):
    """Same seed, same weights: "reference" and "fused" (torch's kernel) give the same outputs,
    states and gradients within 1e-5 (gradients up to ~20 here differ by at most 3e-6).
    "compiled": test_recurrent_compiled.py.

    With variational dropout torch's kernel cannot run: "fused" must fall back to the equations
    and draw the same masks; the check fails if it ran the kernel without them (the masks change
    the output, asserted last).
    """
    results = _run_impls(variant, *dropouts, packed)
    y0, s0, g0 = results["reference"]
    y, s, g = results["fused"]
    assert_close(y, y0, "fused output")
    assert_close(s, s0, "fused final state")
    assert_close(g, g0, "fused parameter grads")
    if dropouts != (0.0, 0.0):  # the dropout did something: without it the output changes
        no_dropout = _run_impls(variant, 0.0, 0.0, packed)["reference"][0]
        assert (no_dropout - y0).abs().max() > 1e-3


@pytest.mark.parametrize("variant", NATIVE_VARIANTS)
def test_reference_and_fused_agree_float64(variant):
    results = _run_impls(
        variant, 0.0, 0.0, packed=True, dtype=torch.float64
    )  # torch's kernel (no dropout: its own RNG)
    y0, s0, g0 = results["reference"]
    y, s, g = results["fused"]
    assert_close(y, y0, "output", atol=1e-10)
    assert_close(s, s0, "final state", atol=1e-10)
    assert_close(g, g0, "parameter grads", atol=1e-10)


def _layer_norm(a, gain, shift, eps):
    """The formula, not F.layer_norm: gain * (a - mean) / sqrt(biased variance + eps) + shift, per row."""
    mean = a.mean(-1, keepdim=True)
    var = ((a - mean) ** 2).mean(-1, keepdim=True)
    return gain * (a - mean) / torch.sqrt(var + eps) + shift


def test_layernorm_lstm_matches_the_papers_equations_in_float64():
    """LayerNormLSTM has no torch counterpart: its outputs, final states and gradients equal a loop
    written here from Ba, Kiros & Hinton (2016) section 3.1, in float64 autograd. 2 layers,
    bidirectional, random gains and shifts (not the initial 1 and 0), a random initial state."""
    torch.manual_seed(0)
    eps, L, D = 1e-5, 2, 2
    ln = snn.LayerNormLSTM(I, H, num_layers=L, bidirectional=True, batch_first=True, impl="reference").double()
    with torch.no_grad():
        for name, p in ln.named_parameters():
            if name.startswith("ln_"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if "weight" in name else 0.0))
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0, c0 = (torch.randn(L * D, B, H, dtype=torch.float64) for _ in range(2))
    y, (h_n, c_n) = ln(x, (h0, c0))

    P = dict(ln.named_parameters())
    layer_in, hs, cs = x, [], []
    for k in range(L):
        outs = []
        for d, sfx in enumerate(["", "_reverse"]):
            name = lambda base: f"{base}_l{k}{sfx}"  # noqa: E731
            h, c = h0[D * k + d], c0[D * k + d]
            steps = range(T - 1, -1, -1) if d else range(T)
            out = [None] * T
            for t in steps:
                a = (
                    _layer_norm(layer_in[:, t] @ P[name("weight_ih")].T, P[name("ln_ih_weight")], 0.0, eps)
                    + _layer_norm(h @ P[name("weight_hh")].T, P[name("ln_hh_weight")], 0.0, eps)
                    + P[name("bias")]
                )
                i, f, g, o = a.chunk(4, dim=1)  # torch's block order
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(
                    _layer_norm(c, P[name("ln_cell_weight")], P[name("ln_cell_bias")], eps)
                )
                out[t] = h
            outs.append(torch.stack(out, 1))
            hs.append(h)
            cs.append(c)
        layer_in = torch.cat(outs, -1)
    assert_close(y, layer_in, "output", atol=1e-10)
    assert_close((h_n, c_n), (torch.stack(hs), torch.stack(cs)), "final state", atol=1e-10)
    w = torch.randn_like(y)
    params = list(ln.parameters())
    g_ours = torch.autograd.grad((w * y).sum() + h_n.sum() + c_n.sum(), params)
    g_eqs = torch.autograd.grad((w * layer_in).sum() + sum(hs).sum() + sum(cs).sum(), params)
    assert_close(g_ours, g_eqs, "parameter grads", atol=1e-10)


def test_variational_dropout_uses_one_mask_per_sequence():
    """The mask is drawn once per (layer, direction) and multiplies h_{t-1} at every step."""
    p = 0.5
    lstm = snn.LSTM(I, H, recurrent_dropout=p, impl="fused")
    x = torch.randn(T, B, I)
    torch.manual_seed(11)
    y, (h_n, c_n) = lstm(x)
    torch.manual_seed(11)
    mask = torch.bernoulli(torch.full((B, H), 1 - p)) / (1 - p)
    h, c = torch.zeros(B, H), torch.zeros(B, H)
    outs = []
    for t in range(T):
        step = snn.lstm_step(
            x[t], h, c, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0, recurrent_mask=mask
        )
        h, c = step.h, step.c
        outs.append(h)
    assert_close(y, torch.stack(outs), "output")
    assert_close(h_n[0], h, "h_n")
    assert_close(c_n[0], c, "c_n")
    # In eval mode there is no mask and the layer is torch's LSTM.
    lstm.eval()
    theirs = nn.LSTM(I, H)
    theirs.load_state_dict(lstm.state_dict())
    assert_close(lstm(x)[0], theirs(x)[0], "eval output")


def _layer_norm64(a, gain, bias, eps=1e-5):
    mean = a.mean(-1, keepdim=True)
    var = ((a - mean) ** 2).mean(-1, keepdim=True)
    out = (a - mean) / torch.sqrt(var + eps) * gain
    return out if bias is None else out + bias


def test_layernorm_lstm_matches_the_paper_equations_in_float64():
    ln = snn.LayerNormLSTM(I, H, impl="fused").double()
    with torch.no_grad():  # move the norms off their (1, 0) initialisation so they matter
        for name, p in ln.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(T, B, I, dtype=torch.float64)
    y, (h_n, c_n) = ln(x)
    h = c = torch.zeros(B, H, dtype=torch.float64)
    for t in range(T):
        a = (
            _layer_norm64(x[t] @ ln.weight_ih_l0.T, ln.ln_ih_weight_l0, None)
            + _layer_norm64(h @ ln.weight_hh_l0.T, ln.ln_hh_weight_l0, None)
            + ln.bias_l0
        )
        i, f, g, o = a.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(_layer_norm64(c, ln.ln_cell_weight_l0, ln.ln_cell_bias_l0))
        assert_close(y[t], h, f"h at step {t}", atol=1e-12)
    assert_close(h_n[0], h, "h_n", atol=1e-12)
    assert_close(c_n[0], c, "c_n", atol=1e-12)


def test_layernorm_lstm_parameters():
    ln = snn.LayerNormLSTM(I, H, num_layers=2, bidirectional=True)
    names = dict(ln.named_parameters())
    assert names["weight_ih_l1_reverse"].shape == (4 * H, 2 * H)
    assert names["ln_hh_weight_l0"].shape == (4 * H,) and names["ln_cell_bias_l1"].shape == (H,)
    assert torch.equal(names["ln_ih_weight_l0"], torch.ones(4 * H))
    assert torch.equal(names["ln_cell_bias_l0"], torch.zeros(H))
    # Per (layer, direction): 4H(I + H) weights + 4H bias + 4H + 4H + H + H norm parameters.
    per = lambda n_in: 4 * H * (n_in + H) + 4 * H + 8 * H + 2 * H  # noqa: E731
    assert count_parameters(ln) == 2 * per(I) + 2 * per(2 * H)
    assert "bias_l0" not in dict(snn.LayerNormLSTM(I, H, bias=False).named_parameters())
    with pytest.raises(TypeError):
        snn.LayerNormLSTM(I, H, proj_size=2)


def test_gradcheck_reference_steps_float64():
    torch.manual_seed(0)
    d = dict(dtype=torch.float64, requires_grad=True)
    x, h, c = torch.randn(2, I, **d), torch.randn(2, H, **d), torch.randn(2, H, **d)
    w4, u4, b4, b4b = (
        torch.randn(4 * H, I, **d),
        torch.randn(4 * H, H, **d),
        torch.randn(4 * H, **d),
        torch.randn(4 * H, **d),
    )
    w3, u3, b3, b3b = (
        torch.randn(3 * H, I, **d),
        torch.randn(3 * H, H, **d),
        torch.randn(3 * H, **d),
        torch.randn(3 * H, **d),
    )
    w1, u1, b1 = torch.randn(H, I, **d), torch.randn(H, H, **d), torch.randn(H, **d)
    w_hr, h_p = torch.randn(3, H, **d), torch.randn(2, 3, **d)
    u4p = torch.randn(4 * H, 3, **d)
    g4, g4b, gc, bc = (torch.randn(n, **d) for n in (4 * H, 4 * H, H, H))
    mask = torch.bernoulli(torch.full((2, H), 0.5, dtype=torch.float64)) * 2
    checks = [
        (lambda *a: snn.rnn_step(*a, nonlinearity="tanh"), (x, h, w1, u1, b1, b1)),
        (lambda *a: tuple(snn.lstm_step(*a)[:2]), (x, h, c, w4, u4, b4, b4b)),
        (lambda *a: tuple(snn.lstm_step(*a)[:2]), (x, h_p, c, w4, u4p, b4, b4b, w_hr)),
        (lambda *a: snn.lstm_step(*a, recurrent_mask=mask).h, (x, h, c, w4, u4, b4, b4b)),
        (lambda *a: snn.gru_step(*a).h, (x, h, w3, u3, b3, b3b)),
        (lambda *a: tuple(snn.layernorm_lstm_step(*a)[:2]), (x, h, c, w4, u4, b4, g4, g4b, gc, bc)),
    ]
    for fn, args in checks:
        assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("cls", [snn.RNNCell, snn.LSTMCell, snn.GRUCell])
def test_gradcheck_reference_cells_float64(cls):
    cell = cls(I, H, impl="reference").double()
    x = torch.randn(2, I, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: _states(cell(x))[0], (x,))


@pytest.mark.parametrize("variant", ["lstm", "gru", "layernorm_lstm"])
def test_recorded_gates(variant):
    cls, extra = VARIANTS[variant]
    torch.manual_seed(0)
    layer = cls(I, H, batch_first=True, bidirectional=True, impl="fused")
    x = torch.randn(B, T, I)
    lengths = torch.tensor([T, 2, 4])
    y, state, gates = layer(x, lengths=lengths, return_gates=True)  # recording runs the equations
    y_fast, state_fast = layer(x, lengths=lengths)  # torch's kernel for lstm and gru
    assert_close(y, y_fast, "output while recording")
    assert_close(state, state_fast, "final state while recording")
    assert set(gates) == {"l0", "l0_reverse"}
    names = {"reset", "update", "candidate"} if variant == "gru" else {"input", "forget", "candidate", "cell", "output"}
    for key in gates:
        assert set(gates[key]) == names
        for n in names:
            assert gates[key][n].shape == (B, T, H)
            assert gates[key][n][1, 2:].abs().max() == 0  # zero past sequence 1's end
    g = gates["l0"]
    if variant == "gru":
        h_prev = torch.cat([torch.zeros(B, 1, H), y[:, :-1, :H]], 1)
        h = g["update"] * h_prev + (1 - g["update"]) * g["candidate"]
        assert_close(h[0], y[0, :, :H], "h from the recorded gates")
    else:
        c_prev = torch.cat([torch.zeros(B, 1, H), g["cell"][:, :-1]], 1)
        assert_close(g["cell"][0], (g["forget"] * c_prev + g["input"] * g["candidate"])[0], "recorded cell")
        if variant == "lstm":
            assert_close(y[0, :, :H], (g["output"] * torch.tanh(g["cell"]))[0], "h from the recorded gates")
    # The forward direction's last cell state is the returned c_n / h_n.
    if variant != "gru":
        assert_close(state[1][0, 0], g["cell"][0, -1], "c_n")


def test_gates_without_recording_and_for_rnn():
    with pytest.raises(ValueError, match="a vanilla RNN has no gates"):
        snn.RNN(I, H)(torch.randn(T, B, I), return_gates=True)
    out = snn.LSTM(I, H)(torch.randn(T, I), return_gates=True)
    assert out[2]["l0"]["forget"].shape == (T, H)  # unbatched in, unbatched gates out


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_lengths_equals_running_each_sequence_alone(impl):
    torch.manual_seed(0)
    gru = snn.GRU(I, H, num_layers=2, bidirectional=True, batch_first=True, impl=impl)
    x = torch.randn(B, T, I)
    lengths = [4, T, 1]
    y, h_n = gru(x, lengths=torch.tensor(lengths))
    assert y.shape == (B, T, 2 * H)
    for b, n in enumerate(lengths):
        y_b, h_b = gru(x[b : b + 1, :n])
        assert_close(y[b, :n], y_b[0], f"output of sequence {b}")
        assert_close(h_n[:, b], h_b[:, 0], f"h_n of sequence {b}")
        assert y[b, n:].abs().max() == 0 if n < T else True


def test_detach_state():
    lstm = snn.LSTM(I, H)
    x = torch.randn(T, B, I)
    _, state = lstm(x)
    detached = snn.detach_state(state)
    assert isinstance(detached, tuple) and all(not s.requires_grad for s in detached)
    assert all(torch.equal(a, b) for a, b in zip(state, detached))
    h = snn.detach_state(state[0])
    assert not h.requires_grad and torch.equal(h, state[0])
    assert snn.detach_state(None) is None
    # Truncated BPTT: the second chunk's gradient does not reach the first chunk's input.
    x1 = torch.randn(T, B, I, requires_grad=True)
    _, s1 = lstm(x1)
    y2, _ = lstm(x, snn.detach_state(s1))
    y2.sum().backward()
    assert x1.grad is None
    with pytest.raises(TypeError, match="got str"):
        snn.detach_state("h")


def test_lab_model_parameter_counts():
    lstm = snn.LSTM(28, 256, num_layers=2, batch_first=True)
    assert count_parameters(nn.Sequential(lstm, nn.Linear(256, 10))) == 821_770
    gru = snn.GRU(28, 256, num_layers=2, batch_first=True)
    assert 4 * count_parameters(gru) == 3 * count_parameters(lstm)
    assert count_parameters(lstm) == count_parameters(nn.LSTM(28, 256, num_layers=2))
    lstm.weight_ih_l0.requires_grad_(False)
    assert count_parameters(lstm) == 821_770 - 2570 - 4 * 256 * 28
    assert count_parameters(lstm, trainable_only=False) == 821_770 - 2570


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])  # layernorm_lstm has no torch kernel behind "fused"
def test_classifier_cells_and_impls_agree(cell):
    models = {}
    for impl in ("fused", "reference"):
        torch.manual_seed(0)
        models[impl] = SequenceClassifier(
            ClassifierConfig(cell=cell, impl=impl, input_size=I, hidden_size=H, num_layers=2, bidirectional=True)
        )
    x, targets = torch.randn(B, T, I), torch.tensor([0, 3, 9])
    logits, loss = models["fused"](x, targets)
    logits_ref, loss_ref = models["reference"](x, targets)
    assert logits.shape == (B, 10)
    assert_close(logits, logits_ref, "logits")
    assert_close(loss, F.cross_entropy(logits_ref, targets), "loss")
    assert models["fused"](x)[1] is None
    if cell != "rnn":
        gates = models["fused"].gates(x)
        assert set(gates) == {"l0", "l0_reverse", "l1", "l1_reverse"}
        assert gates["l1"]["candidate"].shape == (B, T, H)


def test_classifier_config_errors():
    with pytest.raises(ConfigError, match="model.cell must be one of rnn, lstm, gru, layernorm_lstm, got 'tcn'"):
        from_dict(ClassifierConfig, {"cell": "tcn"}, "model")
    with pytest.raises(ConfigError, match="model.impl must be one of auto, fused, compiled, reference, got 'fast'"):
        from_dict(ClassifierConfig, {"impl": "fast"}, "model")
    cfg = from_dict(
        ClassifierConfig, {"cell": "layernorm_lstm", "impl": "reference", "recurrent_dropout": 0.1}, "model"
    )
    model = SequenceClassifier(cfg)
    assert isinstance(model.rnn, snn.LayerNormLSTM) and model.rnn.impl == "reference"
    assert model.rnn.recurrent_dropout == 0.1
    with pytest.raises(ValueError, match=r"expected input \(B, T, 8\), got shape \(2, 3, 7\)"):
        model(torch.randn(2, 3, 7))


def test_benchmark_smoke(capsys):
    """The benchmark runs end to end and prints a ratio row per implementation (no timing asserted)."""
    from seqlab.bench.recurrent import main

    # The compiled rows compile for tens of seconds: test_recurrent_compiled.py runs them.
    args = ["--sizes", "tiny", "--repeats", "1", "--warmup", "0", "--passes", "forward+backward"]
    assert main([*args, "--impls", "fused,reference,layernorm"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("no targets at these sizes (they are set for small and large)")
    rows = [line for line in out.splitlines() if line.startswith("| tiny")]
    assert all(row.split("|")[6].strip() == "" for row in rows)
    names = [row.split("|")[3].strip() for row in rows]
    assert names == ["torch.nn", "fused", "reference", "layernorm", "torch.nn, oneDNN off"]
    assert all(float(row.split("|")[5]) > 0 for row in rows)
    assert rows[0].split("|")[5].strip() == "1.00"


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_bfloat16_input_under_cpu_autocast_like_torch(impl):
    """A bf16 input to a float32 model is accepted under CPU autocast, as torch.nn.LSTM accepts it,
    and the outputs agree with torch's under the same autocast within bf16 rounding."""
    torch.manual_seed(0)
    ours = snn.LSTM(I, H, num_layers=2, batch_first=True, impl=impl)
    theirs = nn.LSTM(I, H, num_layers=2, batch_first=True)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(B, T, I).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, (h_n, c_n) = ours(x)
        y_t, (h_t, c_t) = theirs(x)
    assert y.shape == y_t.shape == (B, T, H)
    assert_close(y.float(), y_t.float(), "output", atol=2e-2)
    assert_close(c_n.float(), c_t.float(), "c_n", atol=2e-2)
    with pytest.raises(ValueError, match=r"input dtype \(torch.bfloat16\) does not match weight dtype"):
        ours(x)  # outside autocast the mismatch is still an error


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_zero_length_and_empty_batch(variant, impl):
    """T = 0 is torch's error; B = 0 gives empty outputs and states of torch's shapes, and zero
    gradients."""
    cls, extra = VARIANTS[variant]
    layer = cls(I, H, num_layers=2, bidirectional=True, batch_first=True, impl=impl, **extra)
    for x in (torch.randn(B, 0, I), torch.randn(0, I)):
        with pytest.raises(RuntimeError, match="^Expected sequence length to be larger than 0 in RNN$"):
            layer(x)
    H_out = extra.get("proj_size", H)
    y, s = layer(torch.randn(0, T, I))
    assert y.shape == (0, T, 2 * H_out)
    assert [tuple(t.shape) for t in _states(s)] == [(4, 0, H_out), (4, 0, H)][: len(_states(s))]
    if variant != "layernorm_lstm":
        theirs = getattr(nn, cls.__name__)(I, H, num_layers=2, bidirectional=True, batch_first=True, **extra)
        y_t, s_t = theirs(torch.randn(0, T, I))
        assert y.shape == y_t.shape and [t.shape for t in _states(s)] == [t.shape for t in _states(s_t)]
    grads = torch.autograd.grad(
        (y.sum() + sum(t.sum() for t in _states(s))), list(layer.parameters()), allow_unused=True
    )
    assert all(g is None or g.abs().max() == 0 for g in grads)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dropout_only_between_layers(variant, impl):
    """torch's dropout= acts between layers only: a 1-layer model trains as it evaluates, and a
    2-layer model is layer 0, then F.dropout with the same random numbers, then layer 1."""
    cls, extra = VARIANTS[variant]
    p, x = 0.5, torch.randn(B, T, I)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn warns that dropout does nothing at num_layers=1
        one = cls(I, H, num_layers=1, dropout=p, batch_first=True, impl=impl, **extra)
    assert_close(one.train()(x)[0], one.eval()(x)[0], "1-layer output, train vs eval", atol=0.0)
    two = cls(I, H, num_layers=2, dropout=p, batch_first=True, impl=impl, **extra).train()
    layers = [cls(n_in, H, batch_first=True, impl=impl, **extra) for n_in in (I, extra.get("proj_size", H))]
    for k, layer in enumerate(layers):
        layer.load_state_dict({n.replace(f"_l{k}", "_l0"): t for n, t in two.state_dict().items() if f"_l{k}" in n})
    torch.manual_seed(5)
    y = two(x)[0]
    torch.manual_seed(5)
    y_chain = layers[1](F.dropout(layers[0](x)[0], p, training=True))[0]
    assert_close(y, y_chain, "2-layer output")
    torch.manual_seed(6)
    assert (two(x)[0] - y).abs().max() > 1e-3  # the dropout did something


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reference_runs_plain_pytorch_ops_only(variant):
    """impl="reference" is the equations in plain PyTorch: forward and backward dispatch only
    aten ops (F.linear's addmm/mm, sigmoid, tanh, ...), never a oneDNN op, so it checks the fast
    paths independently."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpNamespaces(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.add(func.namespace)
            return func(*args, **(kwargs or {}))

    cls, extra = VARIANTS[variant]
    seen = {}
    for impl in ("reference",):
        layer = cls(I, H, num_layers=2, bidirectional=True, impl=impl, **extra)
        with OpNamespaces() as log:
            layer(torch.randn(T, B, I))[0].sum().backward()
        seen[impl] = log.seen
    assert seen["reference"] == {"aten"}


@pytest.mark.parametrize("variant", ["lstm", "gru", "rnn", "layernorm_lstm"])
def test_reference_runs_on_inference_tensors(variant):
    """Weights that are inference tensors (a model built under torch.inference_mode, or a
    parametrization recomputed there) run through the reference with the same numbers as
    under no_grad (a packed-weight cache keyed on version counters once crashed here)."""
    cls, extra = VARIANTS[variant]
    x = torch.randn(5, 2, I, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        built_inside = cls(I, H, num_layers=2, impl="reference", **extra)
        assert built_inside.weight_hh_l0.is_inference()
        y_inside = built_inside(x)[0]
    with torch.no_grad():
        assert_close(built_inside(x)[0], y_inside, "no_grad output", atol=0.0)
    layer = cls(I, H, impl="reference", **extra)
    torch.nn.utils.parametrizations.weight_norm(layer, "weight_hh_l0")
    with torch.inference_mode():
        y_inf = layer(x)[0]
    with torch.no_grad():
        assert_close(layer(x)[0], y_inf, "weight-normed no_grad output")

"""impl="compiled" and "auto": the equations unrolled and compiled equal the eager reference, custom
cells train as their eager loop does, and "auto" falls back cleanly where compilation is unavailable.

Compiling is slow (tens of seconds per graph with inductor on a loaded 2-core machine), so the
parity matrix runs torch.compile with the "aot_eager" backend: the same dynamo trace of the
unrolled loop, the same AOT autograd forward and backward graphs, eager kernels. One test
(marked slow) compiles with inductor, the backend impl="compiled" uses.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from test_recurrent_variants import _grad_scale, _run_impls
from torch import nn

import seqlab.nn as snn
from seqlab.diagnostics import gradflow
from seqlab.nn.recurrent import compiled, routes

from tolerance import PARITY_TOL, assert_close


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
    monkeypatch.setattr(routes, "_UNAVAILABLE", {"cpu": None})  # as where torch.compile works


def _assert_same(results, variant, atol=PARITY_TOL):
    y0, s0, g0 = results["reference"]
    y, s, g = results["compiled"]
    assert_close(y, y0, "compiled output", atol=atol)
    assert_close(s, s0, "compiled final state", atol=atol)
    assert_close(g, g0, "compiled parameter grads", atol=atol * (_grad_scale(g0) if variant == "layernorm_lstm" else 1))


@pytest.mark.parametrize("variant", ["rnn", "rnn_relu", "lstm", "lstm_proj", "gru", "layernorm_lstm"])
def test_compiled_equals_reference(aot_eager, variant):
    """2 layers, bidirectional, dropout between layers and variational dropout (the same masks from
    the same seed), a packed batch of three lengths, a random initial state: outputs, final states
    and gradients within 1e-5. LayerNormLSTM's gradients: within 1e-5 of the largest gradient of
    any parameter, max(1, max |g|). Its norms' backward divides by each row's standard deviation,
    which amplifies float32 rounding: here gradients reach 12 and differ by up to 2.2e-5 absolute,
    1.8e-6 of that scale. The float64 test below holds them to 1e-10."""
    results = _run_impls(variant, 0.3, 0.4, packed=True, impls=("reference", "compiled"))
    _assert_same(results, variant)
    no_dropout = _run_impls(variant, 0.0, 0.0, packed=True, impls=("reference",))["reference"][0]
    assert (no_dropout - results["reference"][0]).abs().max() > 1e-3  # the masks did something


@pytest.mark.parametrize("variant", ["lstm", "layernorm_lstm"])
def test_compiled_equals_reference_float64_padded(aot_eager, variant):
    results = _run_impls(variant, 0.3, 0.4, packed=False, dtype=torch.float64, impls=("reference", "compiled"))
    y0, s0, g0 = results["reference"]
    y, s, g = results["compiled"]
    assert_close(y, y0, "compiled output", atol=1e-10)
    assert_close(s, s0, "compiled final state", atol=1e-10)
    assert_close(g, g0, "compiled parameter grads", atol=1e-10)


@pytest.mark.parametrize("cls", [snn.RNN, snn.LSTM, snn.GRU, snn.LayerNormLSTM])
def test_a_step_on_the_input_term_computed_ahead_equals_the_step_on_x_t(cls):
    """What the compiled route does before the loop: input_function on all T steps at once, then
    step_function(projected=True) on each row, equal to the step reading x_t (float64, every layer
    and direction); a custom cell has no input term."""
    torch.manual_seed(0)
    layer = cls(3, 5, num_layers=2, bidirectional=True, impl="reference").double()
    for k in range(2):
        x = torch.randn(4, 2, 3 if k == 0 else 10, dtype=torch.float64)  # (T, B, H_in)
        for d in range(2):
            terms = layer.input_function(k, d)(x)  # (T, B, G)
            assert terms.shape == (4, 2, layer._gate_chunks * 5)
            state = tuple(torch.randn(2, 5, dtype=torch.float64) for _ in layer._state_sizes())
            for t in range(4):
                h, new, _ = layer.step_function(k, d)(x[t], state, None)
                h_p, new_p, _ = layer.step_function(k, d, projected=True)(terms[t], state, None)
                assert_close(h_p, h, f"{cls.__name__} l{k} d{d} t{t} h", atol=1e-12)
                assert_close(torch.stack(new_p), torch.stack(new), f"{cls.__name__} state", atol=1e-12)
    assert snn.Recurrent(MinimalGRUCell, 3, 5).input_function(0) is None


@pytest.mark.slow
def test_inductor_compiled_equals_reference(monkeypatch):
    """The real thing, once: inductor's kernels for a bidirectional LSTM on a packed batch with
    variational dropout, float32, within 1e-5; no_grad compiles its own forward-only graph with the
    same numbers, and a smaller batch after it runs padded on that compile."""
    monkeypatch.setattr(routes, "_UNAVAILABLE", {})
    reason = routes.compile_unavailable_reason(torch.device("cpu"))
    assert reason is None, f"torch.compile is unavailable on this machine: {reason}"
    results = _run_impls("lstm", 0.0, 0.4, packed=True, num_layers=1, impls=("reference", "compiled"))
    _assert_same(results, "lstm")
    layer = snn.LSTM(4, 5, batch_first=True, impl="compiled").eval()
    ref = snn.LSTM(4, 5, batch_first=True, impl="reference").eval()
    ref.load_state_dict(layer.state_dict())
    with torch.no_grad():
        for batch in (3, 2):
            x = torch.randn(batch, 6, 4)
            assert_close(layer(x)[0], ref(x)[0], f"no_grad output, batch {batch}")


class MinimalGRUCell(nn.Module):
    """A custom cell for the tests: a GRU without reset gate (the minimal gated unit, Zhou et al. 2016)."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.f = nn.Linear(input_size + hidden_size, hidden_size)
        self.n = nn.Linear(input_size + hidden_size, hidden_size)

    def forward(self, x_t, h):
        f_t = torch.sigmoid(self.f(torch.cat([x_t, h], 1)))
        h = (1 - f_t) * h + f_t * torch.tanh(self.n(torch.cat([x_t, f_t * h], 1)))
        return h, h


def _train(impl, steps=3):
    torch.manual_seed(0)
    layer = snn.Recurrent(
        MinimalGRUCell, 3, 4, num_layers=2, bidirectional=True, batch_first=True, dropout=0.2, impl=impl
    )
    head = nn.Linear(8, 1)
    opt = torch.optim.SGD([*layer.parameters(), *head.parameters()], lr=0.5)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 4, 3, generator=gen), torch.randn(5, 1, generator=gen)
    losses, state = [], None
    for _ in range(steps):  # truncated BPTT: the state carried over, detached
        out, state = layer(x, snn.detach_state(state))
        loss = (head(out[:, -1]) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, layer


def test_custom_cell_trains_compiled_as_its_eager_loop(aot_eager):
    """A cell written in the test (one state tensor), 2 layers, bidirectional, dropout, state passed
    between steps: compiled and eager give the same losses and weights; gradient-flow diagnostics
    unroll it. (lengths= and packed input run the same code as the built-in cells' tests above.)"""
    (losses, layer), (losses_ref, layer_ref) = _train("auto"), _train("reference")
    assert losses[-1] < losses[0]
    assert_close(torch.tensor(losses), torch.tensor(losses_ref), "losses")
    assert_close(list(layer.parameters()), list(layer_ref.parameters()), "trained weights")
    assert compiled.compile_seconds and any(k.startswith("Recurrent ") for k in compiled.compile_seconds)
    x = torch.randn(3, 4, 3)
    layer_ref.eval()  # no dropout: the unrolled loop and the layer draw no masks
    out, state = gradflow.unroll(layer_ref, x)
    assert_close(out, layer_ref(x)[0], "gradflow's unrolled output")
    norms = gradflow.layer_grad_norms(layer_ref, x, lambda o, s: o[:, -1].sum())
    assert len(norms) == 4 and norms[-1] > 0 and gradflow.cell_name(layer) == "MinimalGRUCell"


def test_auto_falls_back_to_the_reference_with_one_warning(monkeypatch):
    """No C++ compiler (the availability check made to say so): "auto" runs the eager reference,
    with one warning line for the process, and the same numbers."""
    monkeypatch.setattr(routes, "_UNAVAILABLE", {})
    monkeypatch.setattr(routes, "compile_unavailable_reason", lambda device: "no C++ compiler found (test)")
    torch.manual_seed(0)
    layer = snn.LayerNormLSTM(3, 4, batch_first=True, impl="auto")
    ref = snn.LayerNormLSTM(3, 4, batch_first=True, impl="reference")
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, 5, 3)
    with pytest.warns(routes.CompileUnavailableWarning) as caught:
        y = layer(x)[0]
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert "no C++ compiler found (test); running the eager reference instead" in str(caught[0].message)
    assert_close(y, ref(x)[0], "fallback output", atol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        layer(x)


def test_a_failing_compile_falls_back_to_the_reference(monkeypatch):
    """A compile that raises (here: a backend that fails) is caught: the eager result, one
    warning, and the eager loop from then on."""

    def broken(gm, example_inputs):
        raise RuntimeError("the C++ compiler crashed (test)")

    monkeypatch.setattr(compiled, "BACKEND", broken)
    monkeypatch.setattr(routes, "_UNAVAILABLE", {"cpu": None})
    torch.manual_seed(0)
    layer = snn.GRU(3, 4, impl="compiled")
    ref = snn.GRU(3, 4, impl="reference")
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, 3)
    with pytest.warns(routes.CompileUnavailableWarning, match="torch.compile failed"):
        y = layer(x)[0]
    # The failed call's result is the unrolled stack run eagerly: its input term is one product
    # over all steps rather than one per step, equal to rounding.
    assert_close(y, ref(x)[0], "fallback output", atol=PARITY_TOL)
    assert routes.select_route(layer, x, return_gates=False) == "reference"


def test_tbptt_through_the_trainer_compiled_equals_reference(aot_eager, tmp_path, configs_dir, capsys):
    """The character LSTM with truncated BPTT (state carried between chunks, detached) trains to the
    same weights with model.impl = "compiled" as with "reference"; the trainer prints the compile
    time of each shape family once."""
    from seqlab.runs import train_experiment
    from seqlab.train.config import load_experiment

    args = [
        "--train.max_steps=4",
        "--train.eval_every=0",
        "--train.batch_size=4",
        "--train.tbptt_steps=8",
        "--model.hidden_size=8",
        "--model.embedding_size=4",
        "--model.num_layers=1",
        "--train.tensorboard=false",
        "--data.seq_len=8",
    ]
    weights = {}
    compiled.compile_seconds.clear()
    for impl in ("reference", "compiled"):
        exp = load_experiment(configs_dir / "charlm_lstm.toml", [*args, f"--model.impl={impl}"])
        run = train_experiment(exp, out=tmp_path / impl, argv=[], progress=False)
        weights[impl] = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    err = capsys.readouterr().err
    assert err.count("compiled recurrent layers (LSTM T=8 torch.float32 cpu grad L=1 D=1): first call") == 1
    assert weights["compiled"].keys() == weights["reference"].keys()
    assert_close(list(weights["compiled"].values()), list(weights["reference"].values()), "trained weights")


def test_one_compile_per_shape_family(aot_eager, monkeypatch):
    """A new layer of the same shape reuses the compiled code; a smaller batch runs padded on the
    compile of a batch up to 8 times its size, a larger one (or a much smaller one) compiles anew
    (static shapes); variable-length batches of 5 and 6 steps share one compile (padded to 8 steps),
    and a shorter batch of them too."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    monkeypatch.setattr(compiled, "_BATCHES", {})
    graphs = lambda: counters["stats"]["unique_graphs"]  # noqa: E731
    start = graphs()
    for batch, new_graphs in ((20, 1), (20, 1), (3, 1), (15, 1), (25, 2), (3, 2), (2, 3), (1, 3)):
        layer = snn.GRU(3, 4, batch_first=True, impl="compiled")  # a new instance each time
        layer(torch.randn(batch, 2, 3))[0].sum().backward()
        assert graphs() - start == new_graphs, batch
    layer(torch.randn(3, 6, 3), lengths=torch.tensor([6, 2, 5]))[0].sum().backward()
    layer(torch.randn(3, 5, 3), lengths=torch.tensor([5, 2, 5]))[0].sum().backward()
    layer(torch.randn(2, 5, 3), lengths=torch.tensor([5, 2]))[0].sum().backward()
    assert graphs() - start == 4


class _EveryFamilyRanEleven(dict):
    def setdefault(self, key, default=None):
        return {11}


@pytest.mark.parametrize("variant,packed", [("lstm", True), ("gru", False), ("layernorm_lstm", False)])
def test_a_short_batch_runs_padded_on_a_larger_batchs_compile(aot_eager, monkeypatch, variant, packed):
    """As an epoch's short last batch does: the batch of 3 runs padded to 11 rows of zeros (a larger
    batch ran before) and gives the reference's outputs, final states and gradients, dropout,
    variational dropout and initial state included."""
    monkeypatch.setattr(compiled, "_BATCHES", _EveryFamilyRanEleven())
    batches = []
    call = compiled._call
    monkeypatch.setattr(compiled, "_call", lambda layer, x, *rest: batches.append(x.size(1)) or call(layer, x, *rest))
    results = _run_impls(variant, 0.3, 0.4, packed=packed, impls=("reference", "compiled"))
    assert batches == [11]
    _assert_same(results, variant)

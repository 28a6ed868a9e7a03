"""The recurrent package's structure: which route runs (select_route, the one place that decides
it, and what forward really runs), every private torch call in one module, the names the old
module exported still importable, and class docstrings that state the shape contract."""

from __future__ import annotations

import pydoc
import re
from pathlib import Path

import pytest
import torch

import seqlab.nn as snn
from seqlab.nn.recurrent import base, routes, select_route

# (class, constructor kwargs, training, return_gates) -> route, where torch.compile is available
CASES = [
    (snn.LSTM, {"impl": "reference"}, True, False, "reference"),
    (snn.LSTM, {}, True, False, "native"),
    (snn.LSTM, {}, False, False, "native"),
    (snn.LSTM, {"recurrent_dropout": 0.3}, True, False, "reference"),
    (snn.LSTM, {"recurrent_dropout": 0.3}, False, False, "native"),
    (snn.LSTM, {}, True, True, "reference"),
    (snn.LSTM, {"impl": "auto"}, True, False, "native"),
    (snn.LSTM, {"impl": "auto", "recurrent_dropout": 0.3}, True, False, "compiled"),
    (snn.LSTM, {"impl": "auto"}, True, True, "reference"),
    (snn.LSTM, {"impl": "compiled"}, False, False, "compiled"),
    (snn.LSTM, {"impl": "compiled"}, False, True, "reference"),
    (snn.GRU, {"impl": "compiled"}, True, False, "compiled"),
    (snn.GRU, {}, False, False, "native"),
    (snn.GRU, {"impl": "auto"}, True, False, "compiled"),  # on the CPU: faster than torch's GRU
    (snn.RNN, {"impl": "auto"}, True, False, "native"),
    (snn.LayerNormLSTM, {}, True, False, "reference"),
    (snn.LayerNormLSTM, {"impl": "auto"}, True, False, "compiled"),
    (snn.LayerNormLSTM, {"impl": "reference"}, False, False, "reference"),
]


@pytest.mark.parametrize("cls, kwargs, training, gates, expected", CASES)
def test_select_route_decides_and_forward_runs_it(monkeypatch, cls, kwargs, training, gates, expected):
    monkeypatch.setattr(routes, "_UNAVAILABLE", {"cpu": None})  # as where torch.compile works
    layer = cls(3, 4, num_layers=2, **kwargs).train(training)
    x = torch.randn(5, 2, 3)
    assert select_route(layer, x, return_gates=gates) == expected
    ran: list[str] = []
    native, stack = base.native_layer, type(layer)._run_stack
    monkeypatch.setattr(base, "native_layer", lambda *a: ran.append("native") or native(*a))
    monkeypatch.setattr(
        base, "run_compiled", lambda layer, *a: ran.append("compiled") or layer._run_stack(*a, False)[:2]
    )
    monkeypatch.setattr(type(layer), "_run_stack", lambda self, *a: ran.append("reference") or stack(self, *a))
    layer(x, return_gates=gates)
    assert ran == [expected] if expected != "compiled" else ran == ["compiled", "reference"]


SRC = Path(__file__).resolve().parents[1] / "src" / "seqlab"
PRIVATE = re.compile(r"torch\._(?!_)|\b_VF\b|torch\.ops\.|torch\.backends\.cudnn\.rnn|\._C\b")


def test_every_private_torch_call_is_in_torch_internals():
    """A torch upgrade is checked in one file: no other seqlab module names torch._*, _VF,
    torch.ops.* or torch._C (comments and docstrings aside: code lines only)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "torch_internals.py":
            continue
        in_doc = False
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if code.count('"""') % 2:
                in_doc = not in_doc
                continue
            if not in_doc and PRIVATE.search(code):
                found.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert found == []
    assert [p.relative_to(SRC).as_posix() for p in SRC.rglob("torch_internals.py")] == ["torch_internals.py"]
    internals = (SRC / "torch_internals.py").read_text(encoding="utf-8")
    assert all(
        name in internals
        for name in ("_VF.lstm", "torch.ops.mkldnn._is_mkldnn_bf16_supported", "torch._cudnn_rnn_flatten_weight")
    )


# Every name seqlab/nn/recurrent.py defined or imported from seqlab before it became a package,
# except fused_own's (issue 24), which say what replaced them.
OLD_NAMES = """IMPLS State Gates _recurrent_input rnn_step LSTMStep lstm_step GRUStep gru_step _check_impl
_CellBase RNNCell LSTMCell GRUCell Step _RecurrentBase _rows _recur RNN LSTM GRU detach_state""".split()
RETIRED = "_DOUBLE_BACKWARD _BatchedWeightGrad _ifog _PackedWeight _linear _onednn_usable linear tanh".split()


def test_old_module_names_still_import_or_say_what_replaced_them():
    import seqlab.nn.recurrent as recurrent
    from seqlab.nn.layernorm_lstm import LayerNormLSTM, layernorm_lstm_step  # noqa: F401

    missing = [name for name in OLD_NAMES if not hasattr(recurrent, name)]
    assert missing == []
    assert recurrent._recur is recurrent.run_direction and LayerNormLSTM is snn.LayerNormLSTM
    for name in RETIRED:
        with pytest.raises(AttributeError, match="fused_own was retired .issue 24.: impl='compiled'"):
            getattr(recurrent, name)
    with pytest.raises(AttributeError, match="select_route .issue 24."):
        recurrent.select_path  # noqa: B018
    # The positional 5-tuple gate helpers are gone, with a message that says what replaced them.
    with pytest.raises(AttributeError, match=r"LSTMStep\(\.\.\.\)\.gates\(\), which returns the gates as named fields"):
        recurrent._fused_lstm_gates  # noqa: B018


@pytest.mark.parametrize("cls", [snn.RNN, snn.LSTM, snn.GRU, snn.LayerNormLSTM, snn.RNNCell, snn.LSTMCell, snn.GRUCell])
def test_help_shows_the_shape_contract(cls):
    """help(seqlab.nn.LSTM) etc. show Inputs / Outputs with the symbols defined, as torch's do."""
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "Inputs:" in text and "Outputs:" in text and "N = batch size" in text and "H_in = input_size" in text
    if cls in (snn.RNN, snn.LSTM, snn.GRU, snn.LayerNormLSTM):
        assert "(L, N, H_in)" in text and "(N, L, H_in) with ``batch_first=True``" in text
        assert "L = sequence length, D = 2 if bidirectional else 1" in text
        assert "{" not in text.split("Inputs:")[1].split("Outputs:")[0]  # every placeholder filled

"""The recurrent package's structure: which path runs (select_path, the one place that decides
it, and what forward really runs), every private torch call in one module, the names the old
module exported still importable, and class docstrings that state the shape contract."""

from __future__ import annotations

import pydoc
import re
from pathlib import Path

import pytest
import torch

import seqlab.nn as snn
from seqlab.nn.recurrent import layers, select_path

ONEDNN = torch.backends.mkldnn.is_available()
INFERENCE = "inference" if ONEDNN else "fused_own"  # the inference steps need oneDNN

# (class, constructor kwargs, training, grad enabled, return_gates, dtype, batch) -> path
CASES = [
    (snn.LSTM, {"impl": "reference"}, True, True, False, torch.float32, 2, "reference"),
    (snn.LSTM, {"impl": "reference"}, False, False, False, torch.float32, 2, "reference"),
    (snn.LSTM, {}, True, True, False, torch.float32, 2, "native"),
    (snn.LSTM, {}, False, False, False, torch.float32, 2, "native"),
    (snn.LSTM, {"recurrent_dropout": 0.3}, True, True, False, torch.float32, 2, "fused_own"),
    (snn.LSTM, {"recurrent_dropout": 0.3}, False, True, False, torch.float32, 2, "native"),
    (snn.LSTM, {"recurrent_dropout": 0.3}, True, False, False, torch.float32, 2, INFERENCE),
    (snn.LSTM, {}, True, True, True, torch.float32, 2, "fused_own"),
    (snn.LSTM, {}, False, False, True, torch.float32, 2, "fused_own"),
    (snn.LSTM, {"impl": "fused_own"}, True, True, False, torch.float32, 2, "fused_own"),
    (snn.LSTM, {"impl": "fused_own"}, False, False, False, torch.float32, 2, INFERENCE),
    (snn.LSTM, {"impl": "fused_own", "proj_size": 2}, False, False, False, torch.float32, 2, INFERENCE),
    (snn.LSTM, {"impl": "fused_own"}, False, False, False, torch.float64, 2, "fused_own"),
    (snn.LSTM, {"impl": "fused_own"}, False, False, False, torch.float32, 0, "fused_own"),
    (snn.GRU, {"impl": "fused_own"}, False, False, False, torch.float32, 2, "fused_own"),
    (snn.GRU, {}, False, False, False, torch.float32, 2, "native"),
    (snn.RNN, {"impl": "fused_own"}, False, False, False, torch.float32, 2, "fused_own"),
    (snn.LayerNormLSTM, {}, True, True, False, torch.float32, 2, "fused_own"),
    (snn.LayerNormLSTM, {}, False, False, False, torch.float32, 2, INFERENCE),
    (snn.LayerNormLSTM, {"impl": "reference"}, False, False, False, torch.float32, 2, "reference"),
]


def _spy_paths(monkeypatch, layer) -> list[str]:
    """Record which path's code each forward of ``layer`` reaches: torch's kernel or a step builder."""
    ran: list[str] = []
    native = layers.native_layer
    monkeypatch.setattr(layers, "native_layer", lambda *a: ran.append("native") or native(*a))
    for attr, path in (("_reference_step", "reference"), ("_fused", "fused_own"), ("_inference_step", "inference")):
        builder = getattr(layer, attr)  # bound, or None where the layer has no such step
        if builder is not None:  # an instance attribute shadows the class's method
            setattr(layer, attr, lambda *a, _b=builder, _p=path, **k: ran.append(_p) or _b(*a, **k))
    return ran


@pytest.mark.parametrize("cls, kwargs, training, grad, gates, dtype, batch, expected", CASES)
def test_select_path_decides_and_forward_runs_it(
    monkeypatch, cls, kwargs, training, grad, gates, dtype, batch, expected
):
    layer = cls(3, 4, num_layers=2, **kwargs).to(dtype).train(training)
    x = torch.randn(5, batch, 3, dtype=dtype)
    with torch.set_grad_enabled(grad):
        assert select_path(layer, x, batch, return_gates=gates) == expected
    ran = _spy_paths(monkeypatch, layer)
    with torch.set_grad_enabled(grad):
        layer(x, return_gates=gates)
    assert set(ran) == {expected}
    assert len(ran) == (1 if expected == "native" else 2)  # torch's kernel once; else one step per layer


def test_select_path_steps_aside_for_disabled_onednn_and_forward_ad():
    layer = snn.LSTM(3, 4, impl="fused_own").eval()
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        assert select_path(layer, x, 2, return_gates=False) == INFERENCE
        with torch.backends.mkldnn.flags(enabled=False):
            assert select_path(layer, x, 2, return_gates=False) == "fused_own"
        paths = []
        torch.func.jvp(lambda a: paths.append(select_path(layer, a, 2, return_gates=False)) or a, (x,), (x,))
        assert paths == ["fused_own"]


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
    internals = (SRC / "nn" / "recurrent" / "torch_internals.py").read_text(encoding="utf-8")
    assert all(
        name in internals
        for name in ("_VF.lstm", "torch.ops.mkldnn._linear_pointwise", "torch._cudnn_rnn_flatten_weight")
    )


# Every name seqlab/nn/recurrent.py defined or imported from seqlab before it became a package.
OLD_NAMES = """IMPLS State Gates _recurrent_input rnn_step LSTMStep lstm_step GRUStep gru_step _check_impl
_CellBase RNNCell LSTMCell GRUCell _DOUBLE_BACKWARD _first_order_only Step _RecurrentBase _rows _recur
_BatchedWeightGrad _batched_weight_grad RNN _IFOG _ifog _candidate_times_minus_2_ LSTM GRU detach_state
_PackedWeight _autocast_enabled _linear _mm_at_b _onednn_usable _plain_autograd_only linear tanh""".split()


def test_old_module_names_still_import():
    import seqlab.nn.recurrent as recurrent
    from seqlab.nn.kernels import linear, tanh  # noqa: F401
    from seqlab.nn.layernorm_lstm import LayerNormLSTM, layernorm_lstm_step  # noqa: F401

    missing = [name for name in OLD_NAMES if not hasattr(recurrent, name)]
    assert missing == []
    assert recurrent._recur is recurrent.run_direction and LayerNormLSTM is snn.LayerNormLSTM
    # The positional 5-tuple gate helpers are gone, with a message that says what replaced them.
    with pytest.raises(AttributeError, match="lstm_cell_update, which returns the gates as named fields"):
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

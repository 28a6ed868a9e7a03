"""seqlab.diagnostics: gradient flow through time, gates, attention maps and rollout, plots of a run, the report page.

The gradient norms are checked against autograd run directly here on the layers' own forward;
the plots and the report on two tiny runs (the digits LSTM and ViT presets, shrunk) trained once
for the module; the report page is loaded in headless Chromium.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import seqlab.nn as snn
from seqlab.cli import main
from seqlab.diagnostics import attention as att
from seqlab.diagnostics.curves import curves_figsize
from seqlab.diagnostics.gates import FIGSIZE as GATES_FIGSIZE
from seqlab.diagnostics.gates import record_gates, saturation
from seqlab.diagnostics.gradflow import FIGSIZE as GRADFLOW_FIGSIZE
from seqlab.diagnostics.gradflow import fit_decay, layer_grad_norms, model_grad_norms, unroll, unrolled
from seqlab.diagnostics.posenc import FIGSIZE as POSENC_FIGSIZE
from seqlab.models import (
    GPT,
    ClassifierConfig,
    GPTConfig,
    Seq2SeqTransformer,
    Seq2SeqTransformerConfig,
    SequenceClassifier,
)

LAYERS = {
    "rnn_tanh": lambda: snn.RNN(3, 5, num_layers=2, batch_first=True),
    "rnn_relu": lambda: snn.RNN(3, 5, nonlinearity="relu", batch_first=True),
    "lstm": lambda: snn.LSTM(3, 5, num_layers=2, batch_first=True),
    "lstm_proj_bidirectional": lambda: snn.LSTM(3, 5, proj_size=2, bidirectional=True, batch_first=True),
    "gru_bidirectional": lambda: snn.GRU(3, 5, bidirectional=True, batch_first=True),
    "layernorm_lstm": lambda: snn.LayerNormLSTM(3, 5, num_layers=2, batch_first=True),
}


def _flat(out) -> list[torch.Tensor]:
    y, state = out
    return [y, *(state if isinstance(state, tuple) else (state,))]


@pytest.mark.parametrize("name", list(LAYERS))
def test_unroll_equals_the_layers_forward(name):
    torch.manual_seed(0)
    layer = LAYERS[name]().double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 2, 5, 1])
    for kwargs in ({}, {"lengths": lengths}):
        for got, want in zip(_flat(unroll(layer, x, **kwargs)), _flat(layer(x, **kwargs))):
            assert got.shape == want.shape
            assert (got - want).abs().max() < 1e-12, (name, kwargs)


def _direct_grad_norms(layer, x, readout) -> list[float]:
    """||dL/dh_t|| computed here, independently of seqlab.diagnostics: h_t from the layer's own forward on
    x[:, :t+1], made a leaf, and the rest of the sequence run from it; L = readout(h_T)."""
    T = x.shape[1]
    norms = []
    for t in range(T):
        _, state = layer(x[:, : t + 1])
        h, c = (state[0][-1:], state[1][-1:]) if isinstance(state, tuple) else (state[-1:], None)  # (1, B, H)
        h = h.detach().requires_grad_()
        if t + 1 < T:
            _, rest = layer(x[:, t + 1 :], h if c is None else (h, c.detach()))
            h_T = rest[0][-1] if isinstance(rest, tuple) else rest[-1]  # (B, H)
        else:
            h_T = h[0]
        (g,) = torch.autograd.grad(readout(h_T), h)
        norms.append(float(g.norm()))
    return norms


@pytest.mark.parametrize("cls", [snn.RNN, snn.LSTM, snn.GRU, snn.LayerNormLSTM])
def test_grad_norms_equal_a_direct_autograd_computation(cls):
    torch.manual_seed(1)
    layer = cls(3, 4, batch_first=True).double()
    x = torch.randn(5, 9, 3, dtype=torch.float64)
    w = torch.randn(4, dtype=torch.float64)
    readout = lambda h_T: torch.tanh(h_T @ w).pow(2).mean()  # noqa: E731
    got = layer_grad_norms(layer, x, lambda out, state: readout(out[:, -1]))
    want = _direct_grad_norms(layer, x, readout)
    assert len(got) == 9
    assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-6, (got, want)
    assert min(want) > 0


def test_grad_norms_of_a_task_model_use_its_own_loss():
    torch.manual_seed(2)
    model = SequenceClassifier(ClassifierConfig(cell="gru", input_size=3, hidden_size=6, num_classes=4)).double()
    x, y = torch.randn(8, 10, 3, dtype=torch.float64), torch.randint(0, 4, (8,))
    got = model_grad_norms(model, x, y)
    want = _direct_grad_norms(model.rnn, x, lambda h_T: F.cross_entropy(model.head(h_T), y))
    assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-6
    assert "forward" not in vars(model.rnn), "the layer's own forward is back after the block"
    with unrolled(model) as calls:
        model(x, y)
    assert [name for name, _ in calls] == ["rnn"] and len(calls[0][1].top()) == 10


def test_vanishing_gradient_tanh_rnn_against_lstm_with_forget_bias_one():
    torch.manual_seed(0)
    T, H = 60, 16
    rnn = snn.RNN(4, H, batch_first=True).double()
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(0.5)  # small recurrent weights: spectral radius well below 1
    lstm = snn.LSTM(4, H, batch_first=True).double()
    with torch.no_grad():  # forget-gate bias 1 (block f of i, f, g, o), as Jozefowicz et al. 2015 advise
        lstm.bias_ih_l0[H : 2 * H] = 1.0
        lstm.bias_hh_l0[H : 2 * H] = 0.0
    x = torch.randn(8, T, 4, dtype=torch.float64)
    loss = lambda out, state: out[:, -1].sum()  # noqa: E731  read at the last step: distance d = T - 1 - t
    ratio = {}
    for name, layer in (("rnn", rnn), ("lstm", lstm)):
        n = layer_grad_norms(layer, x, loss)
        ratio[name] = n[T - 1 - 50] / n[T - 1]  # distance 50 over distance 0
    message = f"||dL/dh|| at distance 50 / at distance 0: tanh RNN {ratio['rnn']:.3g}, LSTM {ratio['lstm']:.3g}"
    assert ratio["rnn"] <= 1e-2, message
    assert ratio["lstm"] > 1e3 * ratio["rnn"], message


def test_truncated_bptt_gives_exactly_zero_gradient_beyond_k():
    torch.manual_seed(3)
    layer = snn.LSTM(3, 6, batch_first=True)
    x = torch.randn(4, 20, 3)
    loss = lambda out, state: out[:, -1].pow(2).sum()  # noqa: E731
    k = 5
    full = layer_grad_norms(layer, x, loss)
    cut = layer_grad_norms(layer, x, loss, truncate=k)
    distance = [19 - t for t in range(20)]
    assert all(n == 0.0 for n, d in zip(cut, distance) if d >= k), cut
    assert all(n > 0.0 for n, d in zip(cut, distance) if d < k), cut
    assert all(n > 0.0 for n in full)
    assert cut[-k:] == pytest.approx(full[-k:], rel=1e-5)  # inside the window nothing changes


def test_fit_decay_recovers_a_geometric_rate():
    norms = [0.5 ** (9 - t) for t in range(10)]  # halves with every step back
    assert fit_decay(norms) == pytest.approx(0.5, rel=1e-9)
    assert fit_decay([0.0, 0.0, 1.0]) is None


def test_gates_and_saturation():
    torch.manual_seed(4)
    model = SequenceClassifier(ClassifierConfig(cell="lstm", input_size=3, hidden_size=5, num_classes=2))
    x = torch.randn(6, 7, 3)
    rec = record_gates(model, x)
    assert list(rec.gates) == ["forget", "input", "candidate", "output"]
    assert rec.gates["forget"].shape == (6, 7, 5) and rec.cell.shape == (6, 7, 5)
    want = model.gates(x)["l0"]
    assert torch.equal(rec.gates["input"], want["input"]) and torch.equal(rec.cell, want["cell"])
    h, _ = model.rnn(x)
    assert torch.allclose(rec.hidden, h, atol=1e-6)  # the recording path (reference) vs torch's kernel
    with torch.no_grad():  # a forget gate pinned open: saturated everywhere, the others not
        model.rnn.bias_ih_l0[5:10] = 50.0
    sat = saturation(record_gates(model, x))
    assert sat["forget"] == 1.0 and sat["input"] < 0.5
    rnn = SequenceClassifier(ClassifierConfig(cell="rnn", input_size=3, hidden_size=5, num_classes=2))
    with pytest.raises(ValueError, match="a vanilla RNN has no gates"):
        record_gates(rnn, x)


def test_attention_rollout_equals_a_hand_computation():
    # Layer 1: two heads, identity and swap -> mean [[.5, .5], [.5, .5]] -> with the residual
    # 0.5 I + 0.5 A = [[.75, .25], [.25, .75]]. Layer 2: both heads [[1, 0], [1, 0]] -> [[1, 0], [.5, .5]].
    # Rollout = A~2 A~1 = [[.75, .25], [.5 * .75 + .5 * .25, .5 * .25 + .5 * .75]] = [[.75, .25], [.5, .5]].
    layer1 = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]])  # (B=1, H=2, 2, 2)
    layer2 = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]]])
    R = att.attention_rollout([layer1, layer2])
    assert torch.allclose(R, torch.tensor([[[0.75, 0.25], [0.5, 0.5]]]), atol=1e-7)
    assert torch.allclose(att.attention_rollout([layer1]), torch.tensor([[[0.75, 0.25], [0.25, 0.75]]]))


def test_head_entropy_in_nats():
    uniform = torch.full((1, 1, 3, 4), 0.25)
    onehot = torch.eye(4)[:3].reshape(1, 1, 3, 4)
    amap = att.AttentionMap("encoder", torch.cat([uniform, onehot], dim=1), list("abc"), list("wxyz"))
    assert att.head_entropy(amap)[0].tolist() == pytest.approx([math.log(4), 0.0], abs=1e-6)


def test_seq2seq_transformer_maps_kinds_and_masks():
    torch.manual_seed(5)
    model = Seq2SeqTransformer(
        Seq2SeqTransformerConfig(
            src_vocab_size=9,
            tgt_vocab_size=9,
            max_src_len=8,
            max_tgt_len=8,
            d_model=16,
            num_heads=2,
            d_ff=32,
            num_encoder_layers=2,
            num_decoder_layers=1,
            dropout=0.0,
        )
    )
    x = torch.tensor([[4, 5, 6, 2, 0], [7, 2, 0, 0, 0]])
    y = torch.tensor([[1, 6, 5, 4, 2], [1, 7, 2, 0, 0]])
    _, _, weights = model.eval()(x, y, need_weights=True)
    maps = att.transformer_maps(weights, 1, ["h", "<eos>"], ["<bos>", "h"])  # example 1: source 2, target in 2
    assert [m.kind for m in maps] == ["encoder", "decoder_self", "cross"]
    assert [tuple(m.weights.shape) for m in maps] == [(2, 2, 2, 2), (1, 2, 2, 2), (1, 2, 2, 2)]
    assert maps[1].weights[0, :, 0, 1].abs().max() == 0  # causal: <bos> does not see the next token
    for m in maps:
        assert torch.allclose(m.weights.sum(-1), torch.ones(m.weights.shape[:3]), atol=1e-5)


def test_causal_maps_by_decoding_equal_the_full_forward():
    torch.manual_seed(6)
    model = GPT(GPTConfig(vocab_size=11, block_size=12, d_model=16, num_heads=2, num_layers=2, dropout=0.0)).eval()
    x = torch.randint(0, 11, (1, 9))
    amap = att.causal_maps(model, x, [str(i) for i in x[0].tolist()])
    with torch.no_grad():
        _, full = model.stack(model.pos(model.embed(x)), need_weights=True)  # (1, H, 9, 9) per layer
    assert amap.weights.shape == (2, 2, 9, 9)
    assert torch.allclose(amap.weights, torch.cat(full).float(), atol=1e-5)


# -- a run's plots and report ----------------------------------------------------------------------

SHRINK = ["--train.max_steps=6", "--train.eval_every=3", "--train.log_every=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny runs of the digits presets (LSTM and ViT), trained once for this module."""
    configs = Path(__file__).resolve().parent.parent / "configs"
    out = tmp_path_factory.mktemp("runs")
    trained = {}
    for name, preset, extra in (
        ("lstm", "digits_lstm.toml", ["--model.hidden_size=8"]),
        ("vit", "digits_vit.toml", ["--model.d_model=8", "--model.depth=2", "--model.num_heads=2", "--model.d_ff=16"]),
    ):
        assert (
            main(["train", str(configs / preset), *SHRINK, *extra, "--out", str(out), "--name", name, "--quiet"]) == 0
        )
        trained[name] = next(out.glob(f"{name}-*"))
    return trained


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def px(figsize) -> tuple[int, int]:
    return round(figsize[0] * 100), round(figsize[1] * 100)


EXPECTED = {  # run -> --what -> {file: (width, height) in pixels}; None: skipped
    "lstm": {
        "curves": {"curves.png": px(curves_figsize(3))},
        "gradflow": {"gradflow.png": px(GRADFLOW_FIGSIZE)},
        "gates": {"gates.png": px(GATES_FIGSIZE)},
        "attention": None,
        "posenc": None,
    },
    "vit": {
        "curves": {"curves.png": px(curves_figsize(3))},
        "gradflow": None,
        "gates": None,
        "attention": {
            "attention_vit.png": px(att.attention_figsize(2, 2, 17)),
            "attention_entropy.png": px(att.ENTROPY_FIGSIZE),
            "attention_rollout.png": px(att.ROLLOUT_FIGSIZE),
        },
        "posenc": {"posenc_learned.png": px(POSENC_FIGSIZE)},
    },
}


def test_curves_of_one_logged_step_are_markers_and_an_unreadable_log_is_said(
    tmp_path, monkeypatch, capsys, configs_dir
):
    from seqlab.diagnostics import curves

    figures = []
    monkeypatch.setattr(curves, "save_figure", lambda fig, out_path, **kw: figures.append(fig) or Path(out_path))
    records = [{"step": 1, "train/loss": 2.0, "train/grad_norm": 3.0}, {"step": 1, "val/loss": 1.9}]
    curves.plot_runs_curves({"run": records}, tmp_path / "c.png")
    lines = [line for ax in figures[0].axes for line in ax.get_lines()]
    assert len(lines) == 3 and all(line.get_marker() == "o" for line in lines)  # a line through one point is invisible
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text((configs_dir / "digits_lstm.toml").read_text())
    (run / "metrics.jsonl").write_text('{"step": 1, "train/lo\n3\n')  # half a line, and a JSON that is no record
    assert curves.read_metrics(run / "metrics.jsonl") == []
    capsys.readouterr()
    assert main(["plot", str(run), "--what", "curves"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"skipped curves: {run / 'metrics.jsonl'} holds no readable line (the run logged nothing yet, or the file "
        "is damaged)"
    )
    assert not (run / "plots" / "curves.png").exists()  # it wrote a blank figure


def test_posenc_of_a_transformer_without_positions_says_why(tmp_path, capsys):
    from seqlab.config import to_dict
    from seqlab.data.seq2seq import ReverseConfig
    from seqlab.models import Seq2SeqTransformerConfig, build_model
    from seqlab.train.checkpoint import save_checkpoint
    from seqlab.train.config import TrainConfig

    cfg = Seq2SeqTransformerConfig(
        src_vocab_size=13, tgt_vocab_size=13, max_src_len=11, max_tgt_len=12, d_model=16, num_heads=2,
        num_encoder_layers=1, num_decoder_layers=1, d_ff=32, positions="none",
    )  # fmt: skip
    payload = {
        "model": build_model(cfg).state_dict(),
        "model_config": to_dict(cfg),
        "data_config": to_dict(ReverseConfig(num_train=50, num_val=5, num_test=5)),
        "train_config": to_dict(TrainConfig()),
        "step": 1,
        "task": "seq2seq",
    }
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", payload)
    assert main(["plot", str(tmp_path / "run"), "--what", "posenc"]) == 0
    assert capsys.readouterr().out.strip() == (
        "skipped posenc: model 'seq2seq_transformer' has no positional encoding "
        "(model.positions = 'none': it reads its input as a set)"
    )


@pytest.mark.parametrize("run", ["lstm", "vit"])
def test_every_plot_command_writes_pngs_of_the_expected_size(runs, run, capsys):
    run_dir = runs[run]
    for what, files in EXPECTED[run].items():
        assert main(["plot", str(run_dir), "--what", what, "--example", "3"]) == 0
        out = capsys.readouterr().out
        if files is None:
            assert out.startswith(f"skipped {what}: ") and len(out.strip().splitlines()) == 1, out
            continue
        for name, size in files.items():
            assert str(run_dir / "plots" / name) in out.splitlines(), out
            assert png_size(run_dir / "plots" / name) == size, name
    if run == "lstm":
        flow = json.loads((run_dir / "plots" / "gradflow.json").read_text())
        models = flow["models"]
        assert set(models) == {
            "lstm (trained)",
            "rnn_tanh (init)",
            "rnn_relu (init)",
            "lstm (init)",
            "gru (init)",
            "layernorm_lstm (init)",
            "lstm, forget bias 1 (init)",
            "lstm, chrono (init)",
        }
        assert all(len(m["norms"]) == 8 and m["decay_per_step"] > 0 for m in models.values())  # 8 rows per digit
        assert flow["truncated_bptt"]["truncated"][:6] == [0.0] * 6  # k = 8 // 4 = 2: steps 0..5 get nothing
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    stems = {n[:-4] for files in EXPECTED[run].values() if files for n in files}
    assert {f"diagnostics/{s}" for s in stems} <= set(events.Tags()["images"])


def test_plot_errors_exit_2(runs, tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert main(["plot", str(runs["lstm"]), "--what", "gates", "--example", "100000"]) == 2
    assert "--example 100000 is out of range: the test split has" in capsys.readouterr().err
    assert main(["plot", str(runs["lstm"]), "--data.view=pixels"]) == 2
    assert "only the data's location can be given" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Injected into a copy of the page: collect script errors, then hover the third query token and write
# what the page shows into a <pre id="test-result"> that --dump-dom returns.
PROBE_HEAD = (
    "<script>window.__errors = []; window.addEventListener('error', function (e) { "
    "window.__errors.push(String(e.message)); });</script>"
)
PROBE_TAIL = """<script>
var r = {errors: window.__errors, tokens: document.querySelectorAll('.av-token').length,
         layers: document.querySelectorAll('#av-layer option').length,
         heads: document.querySelectorAll('#av-head option').length, images: document.images.length};
var q = document.querySelectorAll('#av-left .av-token');
if (q.length) {
  q[2].dispatchEvent(new MouseEvent('mouseenter'));
  r.status = document.getElementById('av-status').textContent;
  r.lines = document.querySelectorAll('#av-lines line').length;
  r.highlighted = Array.prototype.filter.call(document.querySelectorAll('#av-right .av-token'),
                                              function (t) { return t.style.background !== ''; }).length;
  document.getElementById('av-head').value = 'mean';
  document.getElementById('av-head').dispatchEvent(new Event('change'));
  r.after_change = document.querySelectorAll('.av-token').length;
}
var pre = document.createElement('pre'); pre.id = 'test-result'; pre.textContent = JSON.stringify(r);
document.body.appendChild(pre);
</script>"""


def _chromium_dom(page: Path, tmp_path: Path) -> tuple[str, str]:
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,1000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("run", ["vit", "lstm"])
def test_report_page_in_headless_chromium(runs, run, tmp_path, capsys):
    import re

    assert main(["report", str(runs[run]), "--example", "1"]) == 0
    page = runs[run] / "report.html"
    assert str(page) in capsys.readouterr().out
    text = page.read_text()
    assert len(text.encode()) < 2_000_000
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "the page must not load anything"
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_TAIL + "</body>"))
    dom, log = _chromium_dom(probe, tmp_path)
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert not console, console
    result = json.loads(re.search(r'<pre id="test-result">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"'))
    assert result["errors"] == []
    for section in ("config", "summary", "curves", "gradflow", "gates", "attention", "posenc", "generation"):
        assert f'id="{section}"' in dom, section
    assert f"model <b>{'rnn_classifier' if run == 'lstm' else 'vit'}</b>" in dom
    if run == "vit":  # 17 tokens (class token + 16 patches) on each side, 2 layers, 2 heads + their mean
        assert result["images"] == 5  # curves, attention maps, entropy, rollout, positional encoding
        assert (result["tokens"], result["layers"], result["heads"]) == (34, 2, 3)
        assert result["status"].startswith('"(0,1)" attends most to "')
        assert 1 <= result["lines"] <= 17 and result["highlighted"] >= 1
        assert result["after_change"] == 34
    else:  # no attention: no head view; gradient flow, gates and curves as images
        assert result["tokens"] == 0 and result["images"] == 3
        assert "skipped: model 'rnn_classifier' has no attention" in dom

"""seqlab.nn.init_recurrent_ (forget-gate bias, chrono, orthogonal) and the models' init keys."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import seqlab.nn as snn
from seqlab.config import ConfigError, to_dict
from seqlab.data.synthetic import adding_problem
from seqlab.diagnostics.gradflow import model_grad_norms
from seqlab.models import (
    ClassifierConfig,
    LanguageModelConfig,
    RecurrentForecaster,
    RecurrentForecasterConfig,
    Seq2SeqRNN,
    Seq2SeqRNNConfig,
    build_model,
)
from seqlab.nn.recurrent import chrono_bias
from seqlab.runs import check_shapes, fill_from_data
from seqlab.train.config import experiment_from_dict

from tolerance import assert_close

H, T_MAX = 3, 10
OPTIONS = {
    "default": {},
    "forget_bias": {"forget_bias": 1.0},
    "chrono": {"init": "chrono", "chrono_max": T_MAX},
    "chrono+forget_bias": {"init": "chrono", "chrono_max": T_MAX, "forget_bias": 0.5},
    "orthogonal": {"init": "orthogonal"},
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blocks(b: torch.Tensor, n: int) -> list[torch.Tensor]:
    return list(b.detach().split(b.numel() // n))


def test_chrono_bias_is_log_of_uniform_1_to_tmax_minus_1():
    b = chrono_bias(5, T_MAX, gen(3))
    u = 1 + (T_MAX - 2) * torch.rand(5, generator=gen(3), dtype=torch.float64)
    assert torch.equal(b, torch.log(u))
    many = chrono_bias(10_000, 100, gen(0))  # memory times 1 + u = 1 + e^b spread over (2, T_max)
    assert 0 <= many.min() and many.max() <= math.log(99), (many.min(), many.max())
    assert abs(many.exp().mean().item() - 50) < 1, many.exp().mean()  # E[u] = T_max / 2


@pytest.mark.parametrize("layer", ["torch", "seqlab"])
def test_lstm_bias_values_exact(layer):
    make = torch.nn.LSTM if layer == "torch" else snn.LSTM
    torch.manual_seed(0)
    before = make(2, H, num_layers=2, bidirectional=True)
    for name, opts in OPTIONS.items():
        m = make(2, H, num_layers=2, bidirectional=True)
        m.load_state_dict(before.state_dict())
        snn.init_recurrent_(m, generator=gen(7), **opts)
        g = gen(7)  # the draws come in parameter order: l0, l0_reverse, l1, l1_reverse
        for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
            b_ih, b_hh = getattr(m, "bias_ih" + suffix), getattr(m, "bias_hh" + suffix)
            o_ih, o_hh = getattr(before, "bias_ih" + suffix), getattr(before, "bias_hh" + suffix)
            (i_ih, f_ih, g_ih, go_ih), (i_hh, f_hh, g_hh, go_hh) = blocks(b_ih, 4), blocks(b_hh, 4)
            (oi_ih, of_ih, og_ih, oo_ih), (oi_hh, of_hh, og_hh, oo_hh) = blocks(o_ih, 4), blocks(o_hh, 4)
            beta = opts.get("forget_bias", 0.0)
            assert torch.equal(torch.cat([g_ih, go_ih, g_hh, go_hh]), torch.cat([og_ih, oo_ih, og_hh, oo_hh])), name
            if opts.get("init") == "chrono":
                b = chrono_bias(H, T_MAX, g).float()
                assert torch.equal(f_ih, b + beta) and torch.equal(i_ih, -b), name  # the sum: b_hh's blocks are 0
                assert torch.equal(f_hh, torch.zeros(H)) and torch.equal(i_hh, torch.zeros(H)), name
            else:
                assert torch.equal(f_ih, of_ih + beta) and torch.equal(f_hh, of_hh), name  # beta on b_ih only
                assert torch.equal(i_ih, oi_ih) and torch.equal(i_hh, oi_hh), name
            w = getattr(m, "weight_hh" + suffix).detach()
            if name == "orthogonal":
                for block in w.split(H):
                    assert_close(block @ block.T, torch.eye(H), f"{suffix} W_h block W W^T", atol=1e-6)
            else:
                assert torch.equal(w, getattr(before, "weight_hh" + suffix)), name


@pytest.mark.parametrize("make", [torch.nn.GRU, snn.GRU, torch.nn.GRUCell, snn.GRUCell])
def test_gru_update_gate_takes_the_keep_bias(make):
    torch.manual_seed(0)
    m = make(2, H)
    old = {n: p.detach().clone() for n, p in m.named_parameters()}
    snn.init_recurrent_(m, init="chrono", chrono_max=T_MAX, forget_bias=0.25, generator=gen(1))
    suffix = "_l0" if isinstance(m, (torch.nn.GRU, snn.GRU)) else ""
    b = chrono_bias(H, T_MAX, gen(1)).float()
    (r_ih, z_ih, n_ih), (r_hh, z_hh, n_hh) = (
        blocks(m.get_parameter("bias_ih" + suffix), 3),
        blocks(m.get_parameter("bias_hh" + suffix), 3),
    )
    (or_ih, _, on_ih), (or_hh, _, on_hh) = blocks(old["bias_ih" + suffix], 3), blocks(old["bias_hh" + suffix], 3)
    assert torch.equal(z_ih, b + 0.25) and torch.equal(z_hh, torch.zeros(H))  # z keeps h_{t-1}: b_z = log(u) + beta
    assert torch.equal(torch.cat([r_ih, n_ih, r_hh, n_hh]), torch.cat([or_ih, on_ih, or_hh, on_hh]))


def test_layernorm_lstm_single_bias_and_lstm_cell():
    torch.manual_seed(0)
    ln = snn.LayerNormLSTM(2, H)
    old = ln.bias_l0.detach().clone()
    snn.init_recurrent_(ln, init="chrono", chrono_max=T_MAX, generator=gen(2))
    b = chrono_bias(H, T_MAX, gen(2)).float()
    i, f, g, o = blocks(ln.bias_l0, 4)
    assert torch.equal(f, b) and torch.equal(i, -b) and torch.equal(torch.cat([g, o]), old[2 * H :])
    cell = snn.LSTMCell(2, H)
    old = cell.bias_ih.detach().clone()
    snn.init_recurrent_(cell, forget_bias=1.0)
    assert torch.equal(cell.bias_ih.detach(), old + torch.tensor([0.0] * H + [1.0] * H + [0.0] * 2 * H))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="a plain RNN has no gate"):
        snn.init_recurrent_(snn.RNN(2, H), forget_bias=1.0)
    with pytest.raises(ValueError, match="no biases"):
        snn.init_recurrent_(torch.nn.LSTM(2, H, bias=False), init="chrono", chrono_max=T_MAX)
    with pytest.raises(ValueError, match="chrono_max"):
        snn.init_recurrent_(torch.nn.LSTM(2, H), init="chrono")
    with pytest.raises(ValueError, match="init must be one of"):
        snn.init_recurrent_(torch.nn.LSTM(2, H), init="xavier")
    with pytest.raises(ValueError, match="holds no recurrent layer"):
        snn.init_recurrent_(torch.nn.Linear(2, H), forget_bias=1.0)
    rnn = snn.RNN(2, H)
    snn.init_recurrent_(rnn, init="orthogonal")  # the weights' option applies to a plain RNN too
    assert_close(rnn.weight_hh_l0 @ rnn.weight_hh_l0.T, torch.eye(H), "W_hh W_hh^T", atol=1e-6)


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("cell", ["lstm", "gru"])  # layernorm_lstm has no torch kernel: "fused" is its reference
def test_every_impl_gives_the_same_outputs_with_every_option(cell, option):
    """torch's kernel (fused) and the reference equations on the same initialised weights (the compiled route
    runs the reference's equations: tests/test_recurrent_compiled.py)."""
    opts = {k: v for k, v in OPTIONS[option].items() if k != "chrono_max"}
    cfg = dict(cell=cell, input_size=2, hidden_size=5, num_layers=2, chrono_max=T_MAX, **opts)
    x = torch.randn(4, 12, 2, generator=gen(5))
    y = torch.randn(4, 1, generator=gen(6))
    outs = {}
    for impl in ("fused", "reference"):
        torch.manual_seed(0)
        model = RecurrentForecaster(RecurrentForecasterConfig(impl=impl, **cfg))
        pred, loss = model(x, y)
        loss.backward()
        outs[impl] = (pred, [p.grad for p in model.parameters()], [p.detach() for p in model.parameters()])
    for impl in ("reference",):
        assert_close(outs[impl][2], outs["fused"][2], f"{impl} parameters")  # the same init on every path
        assert_close(outs[impl][0], outs["fused"][0], f"{impl} prediction")
        assert_close(outs[impl][1], outs["fused"][1], f"{impl} gradients")


def test_no_option_keeps_torch_parity():
    """Defaults change nothing: the model's LSTM holds exactly what torch.nn.LSTM draws from the same seed."""
    torch.manual_seed(0)
    ours = RecurrentForecaster(RecurrentForecasterConfig(input_size=2, hidden_size=5, num_layers=2)).rnn
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(2, 5, num_layers=2, batch_first=True)
    for (n, p), (m, q) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert n == m and torch.equal(p, q), n
    x = torch.randn(3, 7, 2, generator=gen(1))
    assert_close(ours(x)[0], theirs(x)[0], "output")
    assert snn.init_recurrent_(theirs) is theirs  # no option: the module as it was
    assert torch.equal(theirs.bias_ih_l0, ours.bias_ih_l0)


def test_chrono_gradient_reaches_100_steps_back_orders_above_default():
    """||dL/dH_1|| / ||dL/dH_T|| on the adding problem at T = 100 (hidden 64, one batch, seed 0, at init)."""
    x, y = adding_problem(64, 100, 0)
    ratio = {}
    for name, opts in {"default": {}, "forget bias 1": {"forget_bias": 1.0}, "chrono": {"init": "chrono"}}.items():
        torch.manual_seed(0)
        model = RecurrentForecaster(
            RecurrentForecasterConfig(input_size=2, hidden_size=64, chrono_max=100, **opts)  # type: ignore[arg-type]
        )
        norms = model_grad_norms(model, x, y)
        ratio[name] = norms[0] / norms[-1]
    said = ", ".join(f"{k} {v:.3g}" for k, v in ratio.items())
    assert ratio["chrono"] > 1e-5 and ratio["default"] < 1e-15, said  # measured: 1.1e-3 and 7.1e-21
    assert ratio["chrono"] > 1e10 * ratio["default"], said  # ten orders of magnitude at least
    assert ratio["default"] < ratio["forget bias 1"] < ratio["chrono"], said  # 5.5e-8 in between


@pytest.mark.parametrize("config", [ClassifierConfig, RecurrentForecasterConfig, LanguageModelConfig])
def test_config_errors_name_the_key(config):
    with pytest.raises(ValueError, match="model.init must be one of"):
        config(init="xavier")
    with pytest.raises(ValueError, match=r"model.init = 'chrono' sets a gate's bias, and model.cell = 'rnn'"):
        config(cell="rnn", init="chrono")
    with pytest.raises(ValueError, match=r"model.forget_bias = 1.0 sets a gate's bias"):
        config(cell="rnn", forget_bias=1.0)
    with pytest.raises(ValueError, match="model.forget_bias must be a finite number"):
        config(forget_bias=math.nan)
    with pytest.raises(ValueError, match="model.chrono_max must be"):
        config(chrono_max=1)
    config(cell="rnn", init="orthogonal")  # the weights' option takes any cell


def test_chrono_max_from_the_data_or_a_clear_error():
    cfg = RecurrentForecasterConfig(input_size=2, init="chrono")
    assert fill_from_data(cfg, {"seq_len": 50}).chrono_max == 50
    assert fill_from_data(cfg, {"chrono_max": 40, "seq_len": 50}).chrono_max == 40  # a checkpoint's own
    assert fill_from_data(RecurrentForecasterConfig(input_size=2), {"seq_len": 50}).chrono_max == 0  # unused: kept
    with pytest.raises(ValueError, match=r"model.init = 'chrono' needs model.chrono_max .* --model.chrono_max=T"):
        build_model(cfg)
    exp = experiment_from_dict({"model": to_dict(cfg), "data": {"name": "adding", "seq_len": 5}})
    with pytest.raises(ConfigError, match=r"model.init = 'chrono' needs model.chrono_max \(T_max\) and data 'adding'"):
        check_shapes(exp, {"input_size": 2})  # data that gives no sequence length


def test_seq2seq_rnn_encoder_and_decoder_cells_are_initialised():
    torch.manual_seed(0)
    model = Seq2SeqRNN(
        Seq2SeqRNNConfig(
            cell="lstm",
            src_vocab_size=7,
            tgt_vocab_size=7,
            embedding_size=4,
            hidden_size=6,
            num_layers=2,
            init="chrono",
            chrono_max=T_MAX,
            forget_bias=1.0,
        )
    )
    H_enc, H_dec = 3, 6
    for b, h in [(model.encoder.bias_ih_l1_reverse, H_enc), (model.cells[1].bias_ih, H_dec)]:
        i, f = b.detach()[:h], b.detach()[h : 2 * h]
        assert_close(f - 1.0, -i, "b_f - forget_bias vs -b_i", atol=1e-6)  # chrono's b_f = -b_i, plus beta = 1
        assert -math.log(T_MAX - 1) <= i.min() and i.max() <= 0, i
    for b, h in [(model.encoder.bias_hh_l0, H_enc), (model.cells[0].bias_hh, H_dec)]:
        assert torch.equal(b.detach()[: 2 * h], torch.zeros(2 * h))


def test_cli_chrono_takes_t_max_from_the_data_and_the_run_reloads(tmp_path, capsys):
    from seqlab.cli import main
    from seqlab.runs import load_run

    config = Path(__file__).resolve().parent.parent / "configs" / "adding_lstm.toml"
    small = ["--data.seq_len=12", "--data.num_train=64", "--data.num_val=32", "--data.num_test=32"]
    args = ["train", str(config), *small, "--train.max_steps=2", "--model.init=chrono", "--out", str(tmp_path)]
    assert main([*args, "--quiet"]) == 0
    (run,) = tmp_path.glob("adding-*")
    exp, model, _ = load_run(run)
    assert (exp.model.init, exp.model.chrono_max) == ("chrono", 12)  # filled from data.seq_len and saved
    capsys.readouterr()
    assert (
        main(["train", str(config), *small, "--model.cell=rnn", "--model.forget_bias=1", "--out", str(tmp_path)]) == 2
    )
    assert "model.forget_bias = 1.0 sets a gate's bias, and model.cell = 'rnn' has no gate" in capsys.readouterr().err

"""The gpt model: causal mask, GPT-2 init, weight tying, training and checkpoints, cached decoding (and rnn_lm's)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from seqlab.cli import main
from seqlab.config import ConfigError
from seqlab.data import DataError
from seqlab.data.text import CharLMConfig, CharLMDataset, WindowView, build_char_lm
from seqlab.generate import generate
from seqlab.models import GPT, GPTConfig, LanguageModelConfig, RNNLanguageModel
from seqlab.models.decoding import IncrementalDecoder
from seqlab.runs import load_run, train_experiment
from seqlab.train.config import experiment_from_dict
from seqlab.train.likelihood import sequence_log_likelihood

from tolerance import ALLCLOSE_ATOL, ALLCLOSE_RTOL, assert_close

POSITIONS = ("learned", "rotary")


def tiny(positions="learned", **kw) -> GPT:
    cfg = dict(vocab_size=11, block_size=16, d_model=32, num_heads=4, num_layers=2, dropout=0.1, positions=positions)
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**cfg, **kw}))


@pytest.mark.parametrize("positions", POSITIONS)
def test_changing_token_t_plus_1_leaves_logits_up_to_t_unchanged(positions):
    model = tiny(positions).eval()
    x = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(1))
    for t in (0, 5, 10):
        x2 = x.clone()
        x2[:, t + 1] = (x[:, t + 1] + 1) % 11
        a, b = model(x)[0], model(x2)[0]  # (2, 12, 11)
        assert_close(b[:, : t + 1], a[:, : t + 1], f"logits up to {t} after changing token {t + 1}", atol=1e-6)
        assert (a[:, t + 1] - b[:, t + 1]).abs().max() > 1e-3  # and the changed position does see it


def test_gpt2_init_scales_the_residual_projections():
    torch.manual_seed(0)
    L = 6
    model = GPT(GPTConfig(vocab_size=65, d_model=256, num_heads=4, num_layers=L))
    residual = [p for layer in model.stack.layers for p in (layer.self_attn.out_proj.weight, layer.ff.linear2.weight)]
    others = [p for layer in model.stack.layers for p in (layer.self_attn.q_proj.weight, layer.ff.linear1.weight)]
    std = lambda ps: torch.cat([p.detach().flatten() for p in ps]).std().item()  # noqa: E731
    assert std(residual) == pytest.approx(0.02 / math.sqrt(2 * L), rel=0.02)  # 0.00577
    assert std(others) == pytest.approx(0.02, rel=0.02)
    assert std([model.embed.weight]) == pytest.approx(0.02, rel=0.02)
    assert all(float(layer.ff.linear1.bias.detach().abs().max()) == 0 for layer in model.stack.layers)


def test_dropout_falls_where_gpt2_puts_it():
    """GPT-2 (and nanoGPT) drop the attention weights and each sublayer's output before the
    residual add, not the MLP's hidden units: in train mode the FFN's hidden activations reach
    its second linear layer whole, while the attention output is dropped."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, d_model=16, num_heads=2, num_layers=1, dropout=0.5)).train()
    layer = model.stack.layers[0]
    seen = {}
    layer.ff.linear2.register_forward_hook(lambda m, inp, out: seen.update(hidden=inp[0]))
    layer.dropout1.register_forward_hook(lambda m, inp, out: seen.update(attn=(inp[0], out)))
    model(torch.randint(0, 11, (4, 8)))
    assert (seen["hidden"] == 0).float().mean() < 0.05  # GELU is almost never exactly 0; dropout would zero half
    attn_in, attn_out = seen["attn"]
    assert 0.3 < (attn_out == 0).float().mean() < 0.7 and (attn_in != 0).all()
    assert layer.self_attn.dropout == 0.5


def test_output_projection_is_the_token_embedding():
    model = tiny()
    assert model.head.weight is model.embed.weight
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for n, p in model.named_parameters() if n != "head.weight"
    )  # counted once
    untied = tiny(tie_weights=False)
    assert untied.head.weight is not untied.embed.weight


def test_label_smoothing_while_training_plain_nll_in_eval():
    model = tiny(label_smoothing=0.1, dropout=0.0)
    x, y = torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))
    logits, loss = model.train()(x, y)
    log_p = F.log_softmax(logits, -1)  # (2, 8, 11): q = 0.9 one_hot(y) + 0.1 / 11
    smoothed = -(0.9 * log_p.gather(-1, y[..., None]).squeeze(-1) + 0.1 * log_p.mean(-1)).mean()
    assert_close(loss, smoothed, "smoothed training loss", atol=1e-6, rtol=ALLCLOSE_RTOL)
    _, eval_loss = model.eval()(x, y)
    assert_close(eval_loss, -log_p.gather(-1, y[..., None]).mean(), "eval loss", atol=1e-6, rtol=ALLCLOSE_RTOL)


def test_forward_refuses_a_context_longer_than_block_size():
    with pytest.raises(ValueError, match="sequence length 17 exceeds model.block_size = 16"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))


# -- decoding -----------------------------------------------------------------------------------


def _uncached_logits(model, context, block_size=None):
    """The last step's logits of a full forward over (the last block_size tokens of) context."""
    ctx = context if block_size is None else context[:, -block_size:]
    return model(ctx)[0][:, -1]  # (B, V)


@pytest.mark.parametrize("positions", POSITIONS)
def test_cached_decoding_equals_the_uncached_forward_at_every_step(positions):
    # block_size 16, prompt 5, 64 steps: the context outgrows block_size after 11 steps and is cropped.
    model = tiny(positions).eval()
    assert isinstance(model, IncrementalDecoder)
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, 11, (3, 5), generator=g)
    state, tokens = model.begin_decoding(prompt=prompt, max_new_tokens=64)
    assert torch.equal(tokens, prompt[:, -1]) and len(state.caches[0]) == 4
    context = prompt
    for step in range(64):
        logits, state, weights = model.decode_step(state, tokens)
        assert_close(logits, _uncached_logits(model, context, 16), f"logits at step {step}")
        assert weights is None
        tokens = torch.randint(0, 11, (3,), generator=g)
        context = torch.cat((context, tokens[:, None]), dim=1)


def test_kv_cache_is_preallocated_and_written_in_place():
    model = tiny().eval()
    state, tokens = model.begin_decoding(prompt=torch.randint(0, 11, (2, 3)), max_new_tokens=5)
    cache = state.caches[0]
    assert cache.max_len == 2 + 5 and len(cache) == 2
    ptr = cache.k.data_ptr()
    for _ in range(5):
        _, state, _ = model.decode_step(state, tokens)
    assert len(cache) == 7 and cache.k.data_ptr() == ptr  # the same buffer, no concatenation
    with pytest.raises(ValueError, match="room for max_len=7 steps: it holds 7, got 1 more"):
        cache.update(torch.zeros(2, 4, 1, 8), torch.zeros(2, 4, 1, 8))


def test_a_prompt_longer_than_block_size_keeps_its_last_block_size_tokens():
    model = tiny().eval()
    prompt = torch.randint(0, 11, (2, 40))
    state, tokens = model.begin_decoding(prompt=prompt, max_new_tokens=3)
    logits, state, weights = model.decode_step(state, tokens, need_weights=True)
    assert_close(logits, _uncached_logits(model, prompt, 16), "logits", atol=1e-5, rtol=ALLCLOSE_RTOL)
    assert [w.shape for w in weights["self"]] == [(2, 4, 16)] * 2  # one row of weights per layer over 16 keys
    sums = weights["self"][0].sum(-1)
    assert_close(sums, torch.ones(2, 4), "weight sums", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)


@pytest.mark.parametrize("positions", POSITIONS)
def test_reorder_state_selects_and_duplicates_rows(positions):
    model = tiny(positions).eval()
    prompt = torch.randint(0, 11, (3, 6))
    state, tokens = model.begin_decoding(prompt=prompt, max_new_tokens=4)
    index = torch.tensor([2, 0, 0, 1])
    state = model.reorder_state(state, index)
    logits, _, _ = model.decode_step(state, tokens[index])
    assert_close(logits, _uncached_logits(model, prompt[index]), "reordered logits", atol=1e-5, rtol=ALLCLOSE_RTOL)


def test_greedy_generate_extends_the_prompt_with_argmax_tokens():
    model = tiny().train()
    prompt = torch.randint(0, 11, (2, 4))
    out = generate(model, prompt=prompt, max_new_tokens=6).sequences
    assert out.shape == (2, 6) and model.training  # mode restored
    model.eval()
    context = prompt
    for t in range(6):  # each token is the argmax after everything before it
        assert torch.equal(out[:, t], _uncached_logits(model, context).argmax(-1))
        context = torch.cat((context, out[:, t : t + 1]), dim=1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_lm_cached_decoding_equals_the_uncached_forward(cell):
    torch.manual_seed(0)
    model = RNNLanguageModel(
        LanguageModelConfig(cell=cell, vocab_size=11, embedding_size=8, hidden_size=16, num_layers=2)
    ).eval()
    assert isinstance(model, IncrementalDecoder)
    g = torch.Generator().manual_seed(3)
    prompt = torch.randint(0, 11, (3, 5), generator=g)
    state, tokens = model.begin_decoding(prompt=prompt, max_new_tokens=64)
    context = prompt
    for step in range(64):
        if step == 10:  # beam search's reordering, on the way
            index = torch.tensor([1, 1, 0])
            state, tokens, context = model.reorder_state(state, index), tokens[index], context[index]
        logits, state, _ = model.decode_step(state, tokens)
        assert_close(logits, model(context)[0][:, -1], f"logits at step {step}")
        tokens = torch.randint(0, 11, (3,), generator=g)
        context = torch.cat((context, tokens[:, None]), dim=1)


# -- data, training, checkpoints ----------------------------------------------------------------


def test_window_view_cuts_the_windows_it_is_asked_for():
    ids = torch.arange(100)
    starts = torch.tensor([5, 50, 0, 90])
    x, y = WindowView(ids, starts, 8), WindowView(ids, starts, 8, shift=1)
    assert x.shape == (4, 8) and len(x) == 4
    assert torch.equal(x[torch.tensor([1, 3])], torch.stack((torch.arange(50, 58), torch.arange(90, 98))))
    assert torch.equal(y[2], torch.arange(1, 9)) and torch.equal(x[:], ids[starts[:, None] + torch.arange(8)])
    ds = CharLMDataset(ids, starts, 8, vocab=None)
    assert torch.equal(ds.y, ds.x + 1) and len(ds) == 4


TEXT = "to be or not to be, that is the question.\n" * 40


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _experiment(text_file, **train):
    return experiment_from_dict(
        {
            "model": {"name": "gpt", "block_size": 32, "d_model": 32, "num_heads": 2, "num_layers": 2, "dropout": 0.0},
            "data": {
                "name": "char_lm",
                "path": str(text_file),
                "seq_len": 32,
                "num_windows": 1600,
                "val_fraction": 0.1,
                "test_fraction": 0.0,
            },
            "train": {
                "batch_size": 16,
                "lr": 3e-3,
                "max_steps": 100,
                "eval_every": 50,
                "log_every": 50,
                "tensorboard": False,
                "layer_norms_every": 0,
                **train,
            },
        }
    )


def test_trains_on_a_tiny_text_and_round_trips_its_checkpoint(text_file, tmp_path, capsys):
    # 100 steps of a 2-layer GPT on a 42-character line repeated: the loss falls from ln(17) = 2.83
    # to well under 0.5 nats/char (the line is fully predictable after its first few characters).
    exp = _experiment(text_file)
    assert exp.model.vocab_size == 0  # from the data
    run = train_experiment(exp, out=tmp_path, argv=[], progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_val/loss"] < 0.5
    assert not any(k.startswith("test/") for k in summary)  # a 90/10 split holds nothing out for test
    exp2, model, ckpt = load_run(run)
    assert exp2.model.vocab_size == ckpt["model_config"]["vocab_size"] == len(set(TEXT))
    assert model.head.weight is model.embed.weight  # still one tensor after load_state_dict
    weights = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "val"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["val/loss"] == pytest.approx(summary["best_val/loss"], abs=1e-5)  # last.pt is the best here
    assert metrics["val/nll_per_token"] < 0.5  # the strided-window chain rule over the whole part
    assert main(["eval", str(run)]) == 2  # the empty test split is a one-line error
    assert "the test split" in capsys.readouterr().err


def test_chain_rule_eval_reads_no_longer_windows_than_training_did(text_file, tmp_path, monkeypatch, capsys):
    """block_size 32 trained on windows of 16: the positions 16..31 were never trained, so the strided
    windows of `seqlab eval` are 16 long (they were block_size long)."""
    import seqlab.runs.evaluate as evaluate_module

    config = _experiment(text_file, max_steps=2).to_dict()
    config["data"]["seq_len"] = 16
    exp = experiment_from_dict(config)
    assert (exp.model.block_size, exp.data.seq_len) == (32, 16)
    run = train_experiment(exp, out=tmp_path, argv=[], progress=False)
    contexts, real = [], evaluate_module.sequence_log_likelihood

    def spy(*args, context=None, **kwargs):
        contexts.append(context)
        return real(*args, context=context, **kwargs)

    monkeypatch.setattr(evaluate_module, "sequence_log_likelihood", spy)
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "val"]) == 0
    assert contexts == [16] and "val/nll_per_token" in json.loads(capsys.readouterr().out)


def test_vocab_size_mismatch_and_a_too_long_window_name_both_numbers(text_file, tmp_path):
    V = len(set(TEXT))
    exp = _experiment(text_file)
    bad = experiment_from_dict({**exp.to_dict(), "model": {**exp.to_dict()["model"], "vocab_size": 50}})
    with pytest.raises(ConfigError, match=f"model.vocab_size = 50 but data 'char_lm' gives {V}"):
        train_experiment(bad, out=tmp_path / "runs", argv=[], progress=False)
    long = experiment_from_dict({**exp.to_dict(), "data": {**exp.to_dict()["data"], "seq_len": 33}})
    with pytest.raises(ConfigError, match="data.seq_len = 33 but model 'gpt' reads at most model.block_size = 32"):
        train_experiment(long, out=tmp_path / "runs", argv=[], progress=False)
    assert not (tmp_path / "runs").exists()  # refused before any run directory


def test_window_log_likelihood_scores_every_token_once():
    # A model whose logits depend on the current token only: any window gives the exact chain rule,
    # so the strided windows must score each of the T - 1 conditionals exactly once.
    class Bigram(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Embedding(7, 7)

        def forward(self, x, targets=None):
            return self.table(x), None

    torch.manual_seed(0)
    model, ids = Bigram(), torch.randint(0, 7, (203,))
    exact = F.log_softmax(model.table(ids[:-1]).double(), -1).gather(-1, ids[1:, None]).sum().item()
    for context in (1, 4, 16, 202, 500):
        got = sequence_log_likelihood(model, ids, context=context)["log_likelihood"]
        assert got == pytest.approx(exact + math.log(1 / 7), abs=1e-9)


@pytest.mark.parametrize(
    "preset", ["shakespeare_char_gpt.toml", "shakespeare_char_lstm.toml", "shakespeare_char_nanogpt_cpu.toml"]
)
def test_shakespeare_presets_train_on_a_given_text(preset, configs_dir, text_file, tmp_path):
    # The presets as written (precision included), shrunk to two steps on a small text.
    shrink = (
        ["--model.d_model=16", "--model.num_heads=2", "--data.num_windows=64"]
        if "gpt" in preset
        else ["--model.hidden_size=16", "--train.batch_size=4", "--train.tbptt_steps=16"]
    )
    args = [
        "train",
        str(configs_dir / preset),
        f"--data.path={text_file}",
        "--data.seq_len=16",
        "--train.max_steps=2",
        "--train.eval_every=2",
        "--out",
        str(tmp_path / "runs"),
        "--quiet",
        "--train.tensorboard=false",
        *shrink,
    ]
    assert main(args) == 0
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and math.isfinite(summary["best_val/loss"])
    assert summary["precision"] in ("fp32", "bf16")  # the GPT's "auto" resolved to what ran


def test_a_missing_shakespeare_text_names_where_to_get_it(tmp_path):
    with pytest.raises(
        DataError,
        match="text file not found: .*tinyshakespeare/input.txt; download "
        "https://raw.githubusercontent.com/karpathy/char-rnn/.*input.txt",
    ):
        build_char_lm(CharLMConfig(path=str(tmp_path / "tinyshakespeare" / "input.txt")))


def test_resume_with_the_preset_whose_vocab_size_comes_from_the_data(text_file, tmp_path):
    # The checkpoint holds the filled-in vocab_size; the config still says 0 ("from the data"):
    # resuming with that config is not a different model.
    exp = _experiment(text_file, max_steps=4, eval_every=2)
    run = train_experiment(exp, out=tmp_path / "runs", argv=[], progress=False)
    more = experiment_from_dict({**exp.to_dict(), "train": {**exp.to_dict()["train"], "max_steps": 6}})
    assert train_experiment(more, resume=run, argv=[], progress=False) == run
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    assert train_experiment(None, resume=run, overrides=["--train.max_steps=8"], argv=[], progress=False) == run
    assert json.loads((run / "summary.json").read_text())["steps"] == 8


def test_rnn_lm_label_smoothing_while_training_plain_nll_in_eval():
    torch.manual_seed(0)
    model = RNNLanguageModel(
        LanguageModelConfig(vocab_size=11, embedding_size=8, hidden_size=16, num_layers=1, label_smoothing=0.2)
    )
    x, y = torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))
    logits, loss, _ = model.train()(x, y)
    log_p = F.log_softmax(logits, -1)  # (2, 8, 11)
    nll = -log_p.gather(-1, y[..., None]).squeeze(-1)  # (2, 8)
    smoothed = (0.8 * nll - 0.2 * log_p.mean(-1)).mean()
    assert_close(loss, smoothed, "smoothed training loss", atol=1e-6, rtol=ALLCLOSE_RTOL)
    assert_close(model.eval()(x, y)[1], nll.mean(), "eval loss", atol=1e-6, rtol=ALLCLOSE_RTOL)

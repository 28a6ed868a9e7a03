"""seq2seq_rnn and seq2seq_transformer: attention scorers, loss, training, decoding, metrics, CLI end to end."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from seqlab.cli import main
from seqlab.config import ConfigError
from seqlab.data import Vocabulary
from seqlab.generate import generate
from seqlab.models import MODELS, Seq2SeqRNN, Seq2SeqRNNConfig, Seq2SeqTransformer, Seq2SeqTransformerConfig
from seqlab.models.decoding import IncrementalDecoder
from seqlab.nn.alignment import Alignment
from seqlab.nn.losses import token_cross_entropy
from seqlab.train import seq2seq_metrics as sm

from tolerance import ALLCLOSE_ATOL, ALLCLOSE_RTOL, assert_close

V = 10  # <pad> <bos> <eos> <unk> + 6 symbols (ids 4..9)

SMALL = {
    "gru_additive": lambda: Seq2SeqRNN(
        Seq2SeqRNNConfig(src_vocab_size=V, tgt_vocab_size=V, embedding_size=16, hidden_size=32, dropout=0.0)
    ),
    "lstm_general_2layers": lambda: Seq2SeqRNN(
        Seq2SeqRNNConfig(
            cell="lstm",
            attention="general",
            num_layers=2,
            src_vocab_size=V,
            tgt_vocab_size=V,
            embedding_size=16,
            hidden_size=32,
            dropout=0.0,
        )
    ),
    "gru_dot_unidirectional": lambda: Seq2SeqRNN(
        Seq2SeqRNNConfig(
            attention="dot",
            bidirectional=False,
            input_feeding=False,
            src_vocab_size=V,
            tgt_vocab_size=V,
            embedding_size=16,
            hidden_size=32,
            dropout=0.0,
        )
    ),
    "transformer_preln_sinusoidal": lambda: Seq2SeqTransformer(
        Seq2SeqTransformerConfig(
            src_vocab_size=V,
            tgt_vocab_size=V,
            max_src_len=12,
            max_tgt_len=12,
            d_model=32,
            num_heads=2,
            d_ff=64,
            num_encoder_layers=1,
            num_decoder_layers=1,
            dropout=0.0,
        )
    ),
    "transformer_postln_rotary_shared": lambda: Seq2SeqTransformer(
        Seq2SeqTransformerConfig(
            src_vocab_size=V,
            tgt_vocab_size=V,
            max_src_len=12,
            max_tgt_len=12,
            d_model=32,
            num_heads=2,
            d_ff=64,
            num_encoder_layers=1,
            num_decoder_layers=2,
            dropout=0.0,
            norm_first=False,
            positions="rotary",
            share_embeddings=True,
        )
    ),
    "transformer_learned_untied": lambda: Seq2SeqTransformer(
        Seq2SeqTransformerConfig(
            src_vocab_size=V,
            tgt_vocab_size=V,
            max_src_len=12,
            max_tgt_len=12,
            d_model=32,
            num_heads=2,
            d_ff=64,
            num_encoder_layers=1,
            num_decoder_layers=1,
            dropout=0.0,
            positions="learned",
            tie_output=False,
        )
    ),
}


def reverse_batch(n: int, seed: int, min_len: int = 2, max_len: int = 5):
    """n random strings of the 6 symbols (ids 4..9) and their reversals, in the seq2seq data layout."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    x = torch.zeros(n, max_len + 1, dtype=torch.long)
    y = torch.zeros(n, max_len + 2, dtype=torch.long)
    for i, L in enumerate(lengths.tolist()):
        s = torch.randint(4, 10, (L,), generator=g)
        x[i, :L], x[i, L] = s, 2
        y[i, 0], y[i, 1 : L + 1], y[i, L + 1] = 1, s.flip(0), 2
    return x, y


def targets_of(y: torch.Tensor) -> list[list[int]]:
    """The target ids of each row of y: after <bos>, up to <eos>."""
    return [row[1 : row.index(2)] for row in y.tolist()]


def outputs_of(out: torch.Tensor) -> list[list[int]]:
    return [row[: row.index(2)] if 2 in row else row for row in out.tolist()]


# -- attention scorers, float64 and by hand -------------------------------------------------------


def test_dot_and_general_scores_match_hand_computation():
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]], dtype=torch.float64)  # (1, 3, 2)
    mask = torch.tensor([[True, True, False]])  # the third key is padding
    q = torch.tensor([[1.0, 2.0]], dtype=torch.float64)  # (1, 2)
    dot = Alignment("dot", query_size=2, key_size=2).double()
    context, w = dot(q, keys, mask=mask)
    e1, e2 = math.exp(1.0), math.exp(2.0)  # scores q.k = 1, 2 (and the masked 2)
    expected_w = torch.tensor([[e1 / (e1 + e2), e2 / (e1 + e2), 0.0]], dtype=torch.float64)
    assert_close(w, expected_w, "dot weights", atol=1e-12, rtol=ALLCLOSE_RTOL)
    expected_context = torch.tensor([[e1 / (e1 + e2), e2 / (e1 + e2)]], dtype=torch.float64)
    assert_close(context, expected_context, "dot context", atol=1e-12, rtol=ALLCLOSE_RTOL)
    general = Alignment("general", query_size=2, key_size=2).double()
    with torch.no_grad():
        general.score.w_a.weight.copy_(torch.tensor([[0.0, 1.0], [3.0, 0.0]]))  # W_a k = (k_2, 3 k_1)
    _, w = general(q, keys)  # scores q^T W_a k: k1 -> (0, 3).q = 6; k2 -> (1, 0).q = 1; k3 -> (0, 6).q = 12
    expected = torch.softmax(torch.tensor([6.0, 1.0, 12.0], dtype=torch.float64), 0)
    assert_close(w[0], expected, "general weights", atol=1e-12, rtol=ALLCLOSE_RTOL)


def test_additive_score_matches_hand_computation_and_steps_match_a_sequence():
    torch.manual_seed(0)
    att = Alignment("additive", query_size=2, key_size=2, attention_size=1).double()
    with torch.no_grad():
        att.score.w_q.weight.copy_(torch.tensor([[1.0, -1.0]]))
        att.score.w_k.weight.copy_(torch.tensor([[0.5, 2.0]]))
        att.score.w_k.bias.fill_(0.25)
        att.score.v.weight.fill_(3.0)
    q = torch.tensor([[0.2, 0.7]], dtype=torch.float64)
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    scores = [3.0 * math.tanh((0.2 - 0.7) + (0.5 * k1 + 2.0 * k2 + 0.25)) for k1, k2 in ((1, 0), (0, 1))]
    _, w = att(q, keys)
    expected = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0)
    assert_close(w[0], expected, "additive weights", atol=1e-12, rtol=ALLCLOSE_RTOL)
    # T queries at once equal T single steps; a row with no real key gives zeros, not NaN.
    qs = torch.randn(2, 4, 2, dtype=torch.float64)
    keys = torch.randn(2, 3, 2, dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [False, False, False]])
    ctx, w = att(qs, keys, mask=mask)
    for t in range(4):
        c_t, w_t = att(qs[:, t], keys, mask=mask)
        assert_close(c_t, ctx[:, t], f"context at step {t}", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
        assert_close(w_t, w[:, t], f"weights at step {t}", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    assert torch.equal(w[1], torch.zeros(4, 3, dtype=torch.float64)) and not ctx.isnan().any()


# -- loss ----------------------------------------------------------------------------------------


def test_token_cross_entropy_ignores_padding_and_smooths_labels():
    logits = torch.tensor([[[2.0, 0.0, 1.0], [0.5, 0.5, 3.0], [9.0, -9.0, 9.0]]], dtype=torch.float64)
    targets = torch.tensor([[2, 1, 0]])  # the last position is padding
    logp = F.log_softmax(logits, -1)[0]
    nll = -(logp[0, 2] + logp[1, 1]) / 2
    assert_close(token_cross_entropy(logits, targets), nll, "loss", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    eps = 0.1
    smooth = ((1 - eps) * -(logp[0, 2] + logp[1, 1]) + eps * -(logp[0].mean() + logp[1].mean())) / 2
    smoothed = token_cross_entropy(logits, targets, label_smoothing=eps)
    assert_close(smoothed, smooth, "smoothed loss", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    with pytest.raises(ValueError, match=r"logits \(\*, V\) and targets \(\*\) must agree"):
        token_cross_entropy(logits, targets[:, :2])


def test_label_smoothing_only_while_training():
    model = SMALL["transformer_preln_sinusoidal"]()
    model = Seq2SeqTransformer(Seq2SeqTransformerConfig(**{**model.config.__dict__, "label_smoothing": 0.2}))
    x, y = reverse_batch(4, 0)
    model.eval()
    logits, loss = model(x, y)
    y_out = y[:, 1 : logits.shape[1] + 1]  # the batch's own target columns
    nll = F.cross_entropy(logits.reshape(-1, V), y_out.reshape(-1), ignore_index=0)
    assert_close(loss, nll, "eval loss", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    model.train()
    logits_train, smoothed = model(x, y)  # dropout 0: the same outputs
    assert_close(logits_train, logits, "training logits", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    expected = F.cross_entropy(logits.reshape(-1, V), y_out.reshape(-1), ignore_index=0, label_smoothing=0.2)
    assert_close(smoothed, expected, "smoothed training loss", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    assert not torch.allclose(smoothed, loss)


# -- the models ------------------------------------------------------------------------------------


def test_both_models_are_registered_and_implement_the_decoding_contract():
    assert MODELS["seq2seq_rnn"] == (Seq2SeqRNNConfig, Seq2SeqRNN)
    assert MODELS["seq2seq_transformer"] == (Seq2SeqTransformerConfig, Seq2SeqTransformer)
    for make in SMALL.values():
        model = make()
        assert isinstance(model, IncrementalDecoder) and model.vocab_size == V
        assert model.decoding_special_ids() == {"bos": 1, "eos": 2, "pad": 0}


@pytest.mark.parametrize("name", ["gru_additive", "transformer_preln_sinusoidal"])
def test_trains_on_a_tiny_reverse_task(name):
    # 120 Adam steps on 256 random reversals of 2..5 symbols: from ln(10) = 2.3 to below 0.5 nats per token.
    torch.manual_seed(0)
    model = SMALL[name]()
    x, y = reverse_batch(256, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2 if "gru" in name else 3e-3)
    first = None
    for _ in range(120):
        i = torch.randint(0, 256, (32,))
        _, loss = model(x[i], y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    model.eval()
    _, loss = model(x, y)
    assert first > 2.0 and loss.item() < 0.5, (first, loss.item())


@pytest.mark.parametrize("name", ["gru_additive", "transformer_preln_sinusoidal"])
def test_overfits_eight_pairs_to_exact_match(name):
    torch.manual_seed(0)
    model = SMALL[name]()
    x, y = reverse_batch(8, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = generate(model, source=x, max_new_tokens=y.shape[1] - 1).sequences
    assert model.training  # generate gives the mode back
    assert outputs_of(out) == targets_of(y)


@pytest.mark.parametrize("name", list(SMALL))
def test_cached_decoding_equals_the_full_forward(name):
    torch.manual_seed(1)
    model = SMALL[name]().eval()
    x, y = reverse_batch(5, 3)
    with torch.no_grad():
        full, _ = model(x, y)  # (B, U_b - 1, V), teacher forced
        state, first = model.begin_decoding(source=x, max_new_tokens=y.shape[1] - 1)
        assert torch.equal(first, torch.ones(5, dtype=torch.long))  # <bos>
        T = full.shape[1]
        for t in range(T):
            logits, state, weights = model.decode_step(state, y[:, t], need_weights=t == T - 1)
            real = y[:, t] != 0  # a row already past its <eos> is fed padding: no output of it is used
            assert_close(logits[real], full[real, t], f"logits at step {t}")
        cross = weights["cross"]
        S = int((x != 0).sum(-1).max())
        assert cross.shape[0] == 5 and cross.shape[-1] == S
        assert_close(cross.sum(-1), torch.ones(cross.shape[:-1]), "cross weight sums", atol=1e-5, rtol=ALLCLOSE_RTOL)


@pytest.mark.parametrize("name", list(SMALL))
def test_padding_does_not_change_a_sentence_outputs(name):
    torch.manual_seed(2)
    model = SMALL[name]().eval()
    short_x = torch.tensor([[5, 6, 2]])
    short_y = torch.tensor([[1, 6, 5, 2]])
    long_x = torch.tensor([[7, 8, 9, 4, 5, 6, 7, 2]])
    long_y = torch.tensor([[1, 7, 6, 5, 4, 9, 8, 7, 2]])
    x = torch.zeros(2, 10, dtype=torch.long)  # padded beyond the longest, as a dataset's global padding is
    y = torch.zeros(2, 11, dtype=torch.long)
    x[0, :3], y[0, :4], x[1, :8], y[1, :9] = short_x[0], short_y[0], long_x[0], long_y[0]
    with torch.no_grad():
        alone, _ = model(short_x, short_y)  # (1, 3, V)
        batch, _ = model(x, y)  # (2, 8, V)
        assert_close(batch[0, :3], alone[0], "padded sentence's logits")
        assert torch.equal(
            generate(model, source=short_x, max_new_tokens=8).sequences[0, :3],
            generate(model, source=x, max_new_tokens=8).sequences[0, :3],
        )


@pytest.mark.parametrize("name", ["gru_additive", "transformer_preln_sinusoidal"])
def test_evaluated_loss_is_per_token_whatever_the_batch_size(name):
    """The model's loss averages over a batch's non-pad target tokens; evaluate weights each batch's loss by
    that count (it weighted by sentences), so the val/test loss is the token mean for every batch size."""
    from torch.utils.data import TensorDataset

    from seqlab.train.metrics import evaluate

    torch.manual_seed(3)
    model = SMALL[name]().eval()
    x, y = reverse_batch(7, seed=4, min_len=1, max_len=5)  # lengths vary: 2 to 6 target tokens a sentence
    with torch.no_grad():
        logits, _ = model(x, y)
    per_token = F.cross_entropy(logits.flatten(0, 1), y[:, 1:].flatten(), ignore_index=0, reduction="sum")
    n_tokens = (y[:, 1:] != 0).sum()
    assert model.loss_tokens(y) == n_tokens
    expected = (per_token / n_tokens).item()
    for batch_size in (1, 2, 3, 7):
        got = evaluate(model, TensorDataset(x, y), task="seq2seq", batch_size=batch_size)["loss"]
        assert abs(got - expected) <= 1e-6, (batch_size, got, expected)


def test_reorder_state_selects_and_duplicates_rows():
    torch.manual_seed(3)
    for name in ("gru_additive", "transformer_preln_sinusoidal"):
        model = SMALL[name]().eval()
        x, y = reverse_batch(3, 4)
        with torch.no_grad():
            state, tok = model.begin_decoding(source=x, max_new_tokens=4)
            logits0, state, _ = model.decode_step(state, tok)
            index = torch.tensor([2, 2, 0])
            moved = model.reorder_state(state, index)
            nxt = logits0.argmax(-1)
            a, _, _ = model.decode_step(moved, nxt[index])
            b, _, _ = model.decode_step(state, nxt)
        assert_close(a, b[index], f"{name} reordered logits", atol=1e-6, rtol=ALLCLOSE_RTOL)


def test_teacher_forcing_ratio_feeds_own_predictions_while_training():
    cfg = dict(src_vocab_size=V, tgt_vocab_size=V, embedding_size=8, hidden_size=16, dropout=0.0)
    x, y = reverse_batch(16, 5)
    forced = Seq2SeqRNN(Seq2SeqRNNConfig(**cfg))
    own = Seq2SeqRNN(Seq2SeqRNNConfig(**cfg, teacher_forcing=0.0))
    own.load_state_dict(forced.state_dict())
    _, l_forced = forced(x, y)
    _, l_own = own(x, y)
    assert not torch.allclose(l_forced, l_own)  # training: its own (untrained, wrong) guesses went in
    forced.eval(), own.eval()
    # evaluation is always teacher-forced
    assert_close(forced(x, y)[1], own(x, y)[1], "eval loss", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)


def test_attention_weights_are_returned_not_stored():
    model = SMALL["gru_additive"]().eval()
    x, y = reverse_batch(3, 6)
    logits, loss, weights = model(x, y, need_weights=True)
    S, T = int((x != 0).sum(-1).max()), logits.shape[1]
    assert weights["cross"].shape == (3, T, S)
    assert_close(weights["cross"].sum(-1), torch.ones(3, T), "cross weight sums", atol=1e-5, rtol=ALLCLOSE_RTOL)
    pad = (x[:, :S] == 0).unsqueeze(1).expand(-1, T, -1)  # (B, T, S): padded source positions
    assert weights["cross"][pad].abs().max() == 0
    tf = SMALL["transformer_preln_sinusoidal"]().eval()
    _, _, w = tf(x, y, need_weights=True)
    assert len(w["cross"]) == 1 and w["cross"][0].shape == (3, 2, T, S)  # per layer (B, heads, T, S)
    assert w["cross"][0][pad.unsqueeze(1).expand(-1, 2, -1, -1)].abs().max() == 0


def test_model_limits_and_data_mismatches_are_named():
    model = SMALL["transformer_preln_sinusoidal"]()
    long = torch.full((1, 14), 5)
    with pytest.raises(ValueError, match="longer than this model reads: model.max_src_len = 12"):
        model.begin_decoding(source=long, max_new_tokens=3)
    with pytest.raises(ValueError, match=r"max_new_tokens must be in 1..11"):
        model.begin_decoding(source=long[:, :3], max_new_tokens=12)
    with pytest.raises(ValueError, match=r"source ids must be in 0..9"):
        model(torch.tensor([[12, 2]]), torch.tensor([[1, 2]]))
    cfg = model.config
    info = {
        "task": "seq2seq",
        "src_vocab_size": 11,
        "tgt_vocab_size": 10,
        "pad_id": 0,
        "bos_id": 1,
        "eos_id": 2,
        "max_src_len": 12,
        "max_tgt_len": 12,
    }
    with pytest.raises(ConfigError, match=r"model.src_vocab_size = 10 but the data gives 11"):
        cfg.check_data(info)
    with pytest.raises(ConfigError, match=r"the data has targets of up to 20 tokens but model.max_tgt_len = 12"):
        cfg.check_data({**info, "src_vocab_size": 10, "max_tgt_len": 20})
    shared = Seq2SeqTransformerConfig(**{**cfg.__dict__, "share_embeddings": True})
    with pytest.raises(ConfigError, match="share_embeddings = true needs one vocabulary for source and target"):
        shared.check_data(
            {**info, "src_vocab_size": 10, "src_vocab": Vocabulary("abcdef"), "tgt_vocab": Vocabulary("abcdeg")}
        )
    with pytest.raises(ConfigError, match="needs a seq2seq dataset"):
        cfg.check_data({"task": "language_model"})
    with pytest.raises(ValueError, match="must be even with model.bidirectional"):
        Seq2SeqRNNConfig(hidden_size=33)


# -- metrics and predictions.tsv ---------------------------------------------------------------------


def test_exact_match_token_accuracy_and_bleu_by_hand():
    hyps = [["a", "b", "c", "d"], ["x", "y"], ["p"]]
    refs = [["a", "b", "c", "e"], ["x", "y"], ["p", "q"]]
    assert sm.exact_match(hyps, refs) == pytest.approx(1 / 3)
    # with <eos>: a b c d <eos> | a b c e <eos> -> 4 of 5; x y <eos> -> 3 of 3; p <eos> | p q <eos> -> 1 of 3
    assert sm.token_accuracy([[*h, "<eos>"] for h in hyps], [[*r, "<eos>"] for r in refs]) == pytest.approx(8 / 11)
    # corpus BLEU of the first two: pooled precisions 5/6, 3/4, 1/2 and 0/1 (sacreBLEU's "exp" smoothing: 1/2)
    bleu, signature = sm.corpus_bleu(["a b c d", "x y"], ["a b c e", "x y"])
    assert bleu == pytest.approx(100 * (5 / 6 * 3 / 4 * 1 / 2 * 1 / 2) ** 0.25, abs=1e-9)
    assert "tok:13a" in signature and "smooth:exp" in signature
    # brevity penalty: a 4-word output for a 6-word reference, every n-gram right: 100 exp(1 - 6/4)
    assert sm.corpus_bleu(["a b c d"], ["a b c d e f"])[0] == pytest.approx(100 * math.exp(1 - 6 / 4), abs=1e-9)
    chrf, chrf_signature = sm.corpus_chrf(["same text"], ["same text"])
    assert chrf == pytest.approx(100.0) and "nc:6" in chrf_signature
    scores = sm.score(hyps, refs, sep=" ")
    assert scores["exact_match"] == pytest.approx(1 / 3) and scores["token_accuracy"] == pytest.approx(8 / 11)
    assert sm.score([["2", "0"]], [["2", "0"]], sep="")["bleu_signature"].count("tok:char") == 1


def test_detokenize_and_predictions_round_trip(tmp_path):
    assert sm.detokenize(["i", "'", "m", "cold", "."], " ") == "i'm cold."
    assert sm.detokenize(["peut", "-", "être", "(", "oui", ")", "!"], " ") == "peut-être (oui)!"
    assert sm.detokenize(list("2026-11-21"), "") == "2026-11-21"
    rows = [
        ("나는 학생이다", "i am a student.", "i am student."),
        ("tab\there", "new\nline", "back\\slash \\t"),
        ("", "x", ""),
    ]
    path = sm.write_predictions(tmp_path / "predictions.tsv", rows)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "source\treference\thypothesis"
    assert sm.read_predictions(path) == rows


# -- end to end through the CLI, on a user's own Hangul file ---------------------------------------


def test_cli_train_and_eval_on_a_hangul_pairs_file(tmp_path, configs_dir, capsys):
    # The fra-eng preset, shrunk, on a user's own Korean -> English file (3 columns).
    words = {"고양이": "cat", "개": "dog", "사과": "apple", "물": "water", "책": "book"}
    g = torch.Generator().manual_seed(0)
    lines = []
    for i in range(120):
        picked = [list(words)[int(j)] for j in torch.randint(0, 5, (1 + i % 3,), generator=g)]
        lines.append(" ".join(picked) + "\t" + " ".join(words[w] for w in picked) + "\tCC-BY")
    data = tmp_path / "kor-eng.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    preset = str(configs_dir / "fra_eng_transformer.toml")
    shrink = [
        "--model.d_model=16",
        "--model.num_heads=2",
        "--model.d_ff=32",
        "--model.num_encoder_layers=1",
        "--model.num_decoder_layers=1",
        "--train.max_steps=6",
        "--train.eval_every=3",
        "--train.bucket=2",
        "--train.batch_size=16",
        "--train.tensorboard=false",
        "--quiet",
    ]
    assert main(["train", preset, f"--data.path={data}", "--out", str(tmp_path / "refused"), *shrink]) == 2
    assert "set --data.tutorial_filter=false" in capsys.readouterr().err  # no "i am ..." pairs in this file
    user = [f"--data.path={data}", "--data.tutorial_filter=false", "--data.swap=false"]
    out = tmp_path / "runs"
    assert main(["train", preset, *user, "--out", str(out), *shrink]) == 0
    (run,) = out.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    for key in ("test/exact_match", "test/bleu", "test/chrf", "test/token_accuracy"):
        assert isinstance(summary[key], float)
    assert 0 <= summary["test/exact_match"] <= 1 and 0 <= summary["test/bleu"] <= 100
    assert "version:" in summary["sacrebleu_signatures"]["test/bleu"]
    assert "nc:6" in summary["sacrebleu_signatures"]["test/chrf"]
    rows = sm.read_predictions(run / "predictions.tsv")
    assert len(rows) == 12 and all(r[0].split(" ")[0] in words for r in rows)  # 10% of 120, Hangul sources
    assert all(r[1] == " ".join(words[w] for w in r[0].split(" ")) for r in rows)
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test/exact_match"] == pytest.approx(summary["test/exact_match"])
    assert evaluated["test/bleu"] == pytest.approx(summary["test/bleu"])
    assert evaluated["test/chrf_signature"] == summary["sacrebleu_signatures"]["test/chrf"]
    capsys.readouterr()
    assert main(["runs", str(out)]) == 0  # seqlab runs tabulates a seq2seq run (its first test metric)
    assert f"exact_match {summary['test/exact_match']:.4f}" in capsys.readouterr().out
    assert sm.read_predictions(run / "predictions.tsv") == rows


def test_cli_refuses_a_vocabulary_that_is_not_the_data_one(tmp_path, configs_dir, capsys):
    args = [
        "train",
        str(configs_dir / "reverse_transformer.toml"),
        "--model.src_vocab_size=5",
        "--data.num_train=64",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model.src_vocab_size = 5 but the data gives 14; set --model.src_vocab_size=14" in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # refused before any run directory


# -- sentence pairs: the tutorial's subset, unknown words, a missing file ---------------------------


def test_pairs_tutorial_filter_unknown_tokens_and_missing_file(tmp_path):
    from seqlab.data import DataError
    from seqlab.data.pairs import PairsConfig, build_pairs

    lines = [
        "I'm cold.\tJ'ai froid.",
        "He is tall.\tIl est grand.",
        "Go.\tVa !",
        "They're here.\tIls sont là.",
        "I am so very very very very very very tired.\tJe suis très fatigué.",
        "We are here.\tNous sommes ici.",
        "You are here.\tVous êtes ici.",
    ]
    path = tmp_path / "eng-fra.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits = build_pairs(
        PairsConfig(
            path=str(path), swap=True, tutorial_filter=True, max_len=0, min_freq=2, val_fraction=0.0, test_fraction=0.0
        )
    )
    info = splits.info
    # kept: i m / he is / they re / we are / you are; "Go." has no prefix; the tired one has 10 words (< 10 needed)
    assert len(splits.train) == 5
    assert info["skipped"]["not in the PyTorch tutorial's subset (data.tutorial_filter)"] == 2
    assert sorted(t[0] for _, t in splits.train.pairs) == ["he", "i", "they", "we", "you"]  # French -> English
    unknown = [m for m in info["messages"] if "source tokens" in m][0]
    assert "read as <unk>" in unknown and "'froid' (1)" in unknown  # seen once, data.min_freq = 2
    with pytest.raises(
        DataError,
        match=r"sentence-pair file not found: .*eng-fra/eng-fra.txt; download "
        r"https://download.pytorch.org/tutorial/data.zip",
    ):
        build_pairs(PairsConfig(path=str(tmp_path / "eng-fra" / "eng-fra.txt")))


def test_length_bucketing_keeps_every_example_once_and_groups_similar_lengths():
    from seqlab.train.distributed import DistributedBatchSampler

    lengths = torch.randint(2, 40, (1000,), generator=torch.Generator().manual_seed(0))

    def draw(**kw):
        return [idx for idx, _ in DistributedBatchSampler(1000, 32, seed=0, epoch=1, drop_small_last=True, **kw)]

    plain, bucketed = draw(), draw(lengths=lengths, bucket=8)
    assert sorted(torch.cat(bucketed).tolist()) == list(range(1000))  # a permutation, the last batch of 8 last
    assert [len(b) for b in bucketed] == [len(b) for b in plain]
    spread = lambda batches: sum(int(lengths[b].max() - lengths[b].min()) for b in batches) / len(batches)  # noqa: E731
    assert spread(plain) > 30 and spread(bucketed) < 8  # within-batch range of lengths
    assert all(torch.equal(a, b) for a, b in zip(bucketed, draw(lengths=lengths, bucket=8)))  # (seed, epoch) decide
    resumed = [
        idx
        for idx, _ in DistributedBatchSampler(
            1000, 32, seed=0, epoch=1, drop_small_last=True, skip=5, lengths=lengths, bucket=8
        )
    ]
    assert all(torch.equal(a, b) for a, b in zip(resumed, bucketed[5:]))

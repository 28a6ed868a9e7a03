"""seqlab eval on a language model: the chain rule over the split's whole text, and what follows from it."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from seqlab.cli import main
from seqlab.data import CharLMConfig, build_char_lm
from seqlab.models import LanguageModelConfig, RNNLanguageModel
from seqlab.runs import load_run
from seqlab.train.likelihood import sequence_log_likelihood, unigram_probs
from seqlab.utils import log_likelihood_summary


def _tiny_lm(vocab_size: int = 7) -> RNNLanguageModel:
    torch.manual_seed(0)
    return RNNLanguageModel(
        LanguageModelConfig(cell="gru", vocab_size=vocab_size, embedding_size=4, hidden_size=8, num_layers=1)
    )


def test_log_likelihood_is_the_sum_of_one_step_conditionals():
    model = _tiny_lm()
    ids = torch.randint(0, 7, (23,), generator=torch.Generator().manual_seed(1))
    first = torch.tensor([0.1, 0.2, 0.05, 0.3, 0.15, 0.1, 0.1], dtype=torch.float64)  # P(x_1)
    # One token at a time, the state carried: log P(x_1) + log P(x_t | x_<t) for t = 2..T, summed.
    model.eval()
    state, by_steps = None, math.log(first[ids[0]].item())
    for t in range(1, len(ids)):
        logits, _, state = model(ids[t - 1 : t][None], state=state)
        by_steps += F.log_softmax(logits[0, -1].double(), -1)[ids[t]].item()
    model.train()
    for chunk in (1, 5, 64):  # chunking with a carried state changes nothing
        r = sequence_log_likelihood(model, ids, first_probs=first, chunk=chunk)
        assert r["log_likelihood"] == pytest.approx(by_steps, abs=1e-5)
    assert r["tokens"] == 23  # every token scored, x_1 included
    assert r["nll_per_token"] == pytest.approx(-by_steps / 23, abs=1e-6)
    assert r["perplexity"] == pytest.approx(math.exp(-by_steps / 23), rel=1e-6)
    assert r["bits_per_char"] == pytest.approx(-by_steps / 23 / math.log(2), rel=1e-6)
    assert model.training  # restored
    # Without first_probs, x_1 is uniform over the model's 7 outputs.
    uniform = sequence_log_likelihood(model, ids)["log_likelihood"]
    assert uniform == pytest.approx(by_steps - math.log(first[ids[0]].item()) - math.log(7), abs=1e-5)
    one = sequence_log_likelihood(model, ids[:1], first_probs=first)
    assert one["tokens"] == 1 and one["log_likelihood"] == pytest.approx(math.log(first[ids[0]].item()), rel=1e-12)


def test_unigram_probs_are_add_one_smoothed_training_frequencies():
    p = unigram_probs(torch.tensor([0, 0, 2, 0, 2]), 4)
    assert p.dtype == torch.float64 and p.tolist() == pytest.approx([4 / 9, 1 / 9, 3 / 9, 1 / 9], rel=1e-12)
    assert unigram_probs(torch.tensor([1, 1]), 3, alpha=0.0).tolist() == [0.0, 1.0, 0.0]


def test_a_uniform_model_has_perplexity_V_and_log2_V_bits():
    model = _tiny_lm(vocab_size=8)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    r = sequence_log_likelihood(model, torch.arange(40) % 8)
    assert r["log_likelihood"] == pytest.approx(-40 * math.log(8), rel=1e-9)
    assert r["perplexity"] == pytest.approx(8.0, rel=1e-9)
    assert r["bits_per_char"] == pytest.approx(3.0, rel=1e-9)


def test_seqlab_eval_reports_the_chain_rule_for_a_trained_char_lm(tmp_path, configs_dir, capsys):
    argv = [
        "train",
        str(configs_dir / "charlm_lstm.toml"),
        "--train.max_steps=4",
        "--train.eval_every=4",
        "--model.hidden_size=16",
        "--model.embedding_size=8",
        "--data.seq_len=16",
        "--train.tbptt_steps=16",
        "--train.tensorboard=false",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert main(argv) == 0
    run = next(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["test/loss"] == pytest.approx(summary["test/loss"], abs=1e-5)  # the existing output is unchanged
    # Independently: the whole test text in one forward pass, no chunks.
    _, model, _ = load_run(run)
    splits = build_char_lm(CharLMConfig(seq_len=16))
    ids = splits.test.ids
    with torch.no_grad():
        logits, _, _ = model.eval()(ids[:-1][None])
        ll = F.log_softmax(logits[0].double(), -1).gather(-1, ids[1:, None]).sum().item()
    # x_1 by the training part's add-one-smoothed unigram frequency, counted here by hand.
    train = splits.train.ids.tolist()
    V = splits.info["vocab_size"]
    ll += math.log((train.count(int(ids[0])) + 1) / (len(train) + V))
    assert m["test/tokens"] == len(ids)
    assert m["test/log_likelihood"] == pytest.approx(ll, abs=1e-6 * abs(ll) + 1e-3)
    nll = -ll / len(ids)
    assert m["test/nll_per_token"] == pytest.approx(nll, abs=1e-5)
    assert m["test/perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert m["test/bits_per_char"] == pytest.approx(nll / math.log(2), rel=1e-5)
    # Four steps of training leave it near the uniform model's log V nats per character.
    assert abs(m["test/nll_per_token"] - math.log(splits.info["vocab_size"])) < 0.5


def test_eval_of_a_classifier_is_unchanged(tmp_path, configs_dir, capsys):
    assert (
        main(
            [
                "train",
                str(configs_dir / "digits_lstm.toml"),
                "--train.max_steps=2",
                "--model.hidden_size=8",
                "--train.tensorboard=false",
                "--out",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", str(next(tmp_path.iterdir()))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"test/loss", "test/accuracy", "seconds", "precision"}  # eval records its precision (#23)
    assert out["precision"] == "fp32"


def test_errors():
    with pytest.raises(ValueError, match=r"expected a 1-D id sequence of at least 1 token, got shape \(0,\)"):
        sequence_log_likelihood(_tiny_lm(), torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError, match=r"expected first_probs of shape \(7,\) over the vocabulary, got \(5,\)"):
        sequence_log_likelihood(_tiny_lm(), torch.tensor([3, 1]), first_probs=torch.full((5,), 0.2))


def test_the_shared_summary_guards_the_exp_overflow():
    r = log_likelihood_summary(-800.0, 1)  # exp(800) overflows a float
    assert r == {
        "log_likelihood": -800.0,
        "tokens": 1,
        "nll_per_token": 800.0,
        "perplexity": math.inf,
        "bits_per_char": pytest.approx(800.0 / math.log(2), rel=1e-15),
    }
    r = log_likelihood_summary(-6.0, 4)
    assert r["perplexity"] == pytest.approx(math.exp(1.5), rel=1e-15) and r["nll_per_token"] == 1.5

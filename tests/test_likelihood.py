"""seqlab eval on a language model: the chain rule over the split's whole text, and what follows from it."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from seqlab.cli import main
from seqlab.data import CharLMConfig, build_char_lm
from seqlab.models import LanguageModelConfig, RNNLanguageModel
from seqlab.train.likelihood import sequence_log_likelihood
from seqlab.train.run import load_run


def _tiny_lm(vocab_size: int = 7) -> RNNLanguageModel:
    torch.manual_seed(0)
    return RNNLanguageModel(LanguageModelConfig(cell="gru", vocab_size=vocab_size, embedding_size=4, hidden_size=8,
                                                num_layers=1))


def test_log_likelihood_is_the_sum_of_one_step_conditionals():
    model = _tiny_lm()
    ids = torch.randint(0, 7, (23,), generator=torch.Generator().manual_seed(1))
    # One token at a time, the state carried: log P(x_t | x_<t) for t = 2..T, summed.
    state, by_steps = None, 0.0
    for t in range(1, len(ids)):
        logits, _, state = model(ids[t - 1:t][None], state=state)
        by_steps += F.log_softmax(logits[0, -1].double(), -1)[ids[t]].item()
    for chunk in (1, 5, 64):  # chunking with a carried state changes nothing
        r = sequence_log_likelihood(model, ids, chunk=chunk)
        assert r["log_likelihood"] == pytest.approx(by_steps, abs=1e-5)
    assert r["tokens"] == 22
    assert r["nll_per_token"] == pytest.approx(-by_steps / 22, abs=1e-6)
    assert r["perplexity"] == pytest.approx(math.exp(-by_steps / 22), rel=1e-6)
    assert r["bits_per_char"] == pytest.approx(-by_steps / 22 / math.log(2), rel=1e-6)
    assert model.training  # restored


def test_a_uniform_model_has_perplexity_V_and_log2_V_bits():
    model = _tiny_lm(vocab_size=8)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    r = sequence_log_likelihood(model, torch.arange(40) % 8)
    assert r["log_likelihood"] == pytest.approx(-39 * math.log(8), rel=1e-9)
    assert r["perplexity"] == pytest.approx(8.0, rel=1e-9)
    assert r["bits_per_char"] == pytest.approx(3.0, rel=1e-9)


def test_seqlab_eval_reports_the_chain_rule_for_a_trained_char_lm(tmp_path, configs_dir, capsys):
    argv = ["train", str(configs_dir / "charlm_lstm.toml"), "--train.max_steps=4", "--train.eval_every=4",
            "--model.hidden_size=16", "--model.embedding_size=8", "--data.seq_len=16", "--train.tbptt_steps=16",
            "--train.tensorboard=false", "--out", str(tmp_path), "--quiet"]
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
    assert m["test/tokens"] == len(ids) - 1
    assert m["test/log_likelihood"] == pytest.approx(ll, abs=1e-6 * abs(ll) + 1e-3)
    nll = -ll / (len(ids) - 1)
    assert m["test/nll_per_token"] == pytest.approx(nll, abs=1e-5)
    assert m["test/perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert m["test/bits_per_char"] == pytest.approx(nll / math.log(2), rel=1e-5)
    # Four steps of training leave it near the uniform model's log V nats per character.
    assert abs(m["test/nll_per_token"] - math.log(splits.info["vocab_size"])) < 0.5


def test_eval_of_a_classifier_is_unchanged(tmp_path, configs_dir, capsys):
    assert main(["train", str(configs_dir / "digits_lstm.toml"), "--train.max_steps=2", "--model.hidden_size=8",
                 "--train.tensorboard=false", "--out", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(next(tmp_path.iterdir()))]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"test/loss", "test/accuracy", "seconds"}


def test_errors():
    with pytest.raises(ValueError, match=r"expected a 1-D id sequence of at least 2 tokens, got shape \(1,\)"):
        sequence_log_likelihood(_tiny_lm(), torch.tensor([3]))

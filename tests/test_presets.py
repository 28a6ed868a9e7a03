"""Every preset in configs/ loads, and the long-range tasks train end to end through the CLI."""

import json

import pytest
import torch
import torch.nn.functional as F

from seqlab.cli import main
from seqlab.models import ClassifierConfig, SequenceClassifier
from seqlab.train.config import load_experiment


def test_every_preset_loads(configs_dir):
    names = sorted(p.name for p in configs_dir.glob("*.toml"))
    assert {
        "digits_lstm.toml",
        "digits_vit.toml",
        "mnist_lstm.toml",
        "charlm_lstm.toml",
        "adding_lstm.toml",
        "copy_lstm.toml",
        "sunspots_lstm.toml",
    } <= set(names)
    for name in names:
        exp = load_experiment(configs_dir / name)
        assert exp.model.name and exp.data.name


@pytest.mark.parametrize(
    "preset,task,baseline",
    [
        ("adding_lstm.toml", "regression", ("baseline/mse", 1 / 6)),
        ("copy_lstm.toml", "sequence_labeling", ("baseline/cross_entropy", 10 * 2.0794415416798357 / (20 + 20))),
    ],
)
def test_long_range_task_end_to_end(tmp_path, configs_dir, capsys, preset, task, baseline):
    args = [
        "train",
        str(configs_dir / preset),
        "--train.max_steps=4",
        "--train.eval_every=2",
        "--model.hidden_size=8",
        "--data.num_train=64",
        "--data.num_val=32",
        "--data.num_test=32",
        "--out",
        str(tmp_path),
        "--quiet",
        "--train.tensorboard=false",
    ]
    assert main(args) == 0
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == task and summary["steps"] == 4
    key, value = baseline
    assert summary[key] == pytest.approx(value, rel=1e-3)
    assert summary["test/loss"] > 0
    if task == "sequence_labeling":
        assert 0 <= summary["test/accuracy"] <= 1
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["test/loss"] == pytest.approx(summary["test/loss"], abs=1e-5)


def test_per_step_classifier_labels_every_step():
    torch.manual_seed(0)
    model = SequenceClassifier(ClassifierConfig(input_size=3, hidden_size=5, num_classes=4, per_step=True))
    x, y = torch.randn(2, 6, 3), torch.randint(0, 4, (2, 6))
    logits, loss = model(x, y)
    assert logits.shape == (2, 6, 4)
    h, _ = model.rnn(x)
    assert torch.allclose(logits, model.head(h), atol=1e-6)  # the head reads every step's h_t
    assert torch.allclose(loss, F.cross_entropy(logits.reshape(12, 4), y.reshape(12)))


def test_sequence_labeling_accuracy_is_per_example_fraction_of_steps():
    from seqlab.train.metrics import task_metrics

    output = torch.tensor(
        [[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]]
    )  # (B=2, T=4, C=2)
    y = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    assert task_metrics("sequence_labeling", output, y)["accuracy"].item() == pytest.approx(0.5 + 1.0)

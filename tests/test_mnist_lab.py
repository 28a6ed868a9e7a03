"""configs/mnist_lab.toml is the lecture's lab model, built from the preset alone (no MNIST files needed)."""

from __future__ import annotations

import torch

from seqlab.models import SequenceClassifier, build_model
from seqlab.train.config import load_experiment
from seqlab.utils import count_parameters


def test_mnist_lab_preset_is_the_lecture_model(configs_dir):
    exp = load_experiment(configs_dir / "mnist_lab.toml")
    model = build_model(exp.model)
    assert isinstance(model, SequenceClassifier)
    # LSTM(28 -> 256): 4 * 256 * (28 + 256) + 2 * 4 * 256 = 292,864; LSTM(256 -> 256): 526,336;
    # Linear(256, 10): 2,570. Together 821,770, the lab's count (torch's two bias vectors per layer).
    assert count_parameters(model) == 821_770
    assert (exp.model.cell, exp.model.input_size, exp.model.hidden_size, exp.model.num_layers) == ("lstm", 28, 256, 2)
    assert (model.head.in_features, model.head.out_features) == (256, 10)
    assert (exp.data.name, exp.data.view, exp.train.epochs) == ("mnist", "rows", 3)
    logits, loss = model(torch.zeros(2, 28, 28), torch.tensor([0, 1]))  # (B, T rows, 28 pixels), batch first
    assert logits.shape == (2, 10) and torch.isfinite(loss)

"""Task models assembled from ``seqlab.nn`` blocks. ``MODELS`` maps ``[model] name`` to (config, class).

The contract the trainer relies on: ``model(x, targets) -> (output, loss)``.
"""

from __future__ import annotations

from .classifier import ClassifierConfig, SequenceClassifier
from .language_model import LanguageModelConfig, RNNLanguageModel
from .vit import ViT, ViTConfig

MODELS: dict[str, tuple[type, type]] = {
    "rnn_classifier": (ClassifierConfig, SequenceClassifier),
    "rnn_lm": (LanguageModelConfig, RNNLanguageModel),
    "vit": (ViTConfig, ViT),
}


def build_model(config):
    """The model that ``config`` (any registered model config) describes."""
    return MODELS[config.name][1](config)


__all__ = ["MODELS", "ClassifierConfig", "LanguageModelConfig", "RNNLanguageModel", "SequenceClassifier", "build_model"]

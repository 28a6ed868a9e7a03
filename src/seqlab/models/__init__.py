"""Task models assembled from ``seqlab.nn`` blocks. ``MODELS`` maps ``[model] name`` to (config, class).

The contract the trainer relies on: ``model(x, targets) -> (output, loss)``.

Two models here are fit in closed form, not by the trainer, and are not in ``MODELS``:
``ARModel`` (linear AR(tau), least squares) and ``MarkovModel`` (an n-gram, by counting).
"""

from __future__ import annotations

from .ar import ARModel
from .classifier import ClassifierConfig, SequenceClassifier
from .forecaster import (
    ForecastHead,
    MLPAutoregressive,
    MLPAutoregressiveConfig,
    RecurrentForecaster,
    RecurrentForecasterConfig,
    TransformerForecaster,
    TransformerForecasterConfig,
)
from .gpt import GPT, GPTConfig
from .language_model import LanguageModelConfig, RNNLanguageModel
from .markov import MarkovModel
from .seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig
from .seq2seq_transformer import Seq2SeqTransformer, Seq2SeqTransformerConfig
from .vit import ViT, ViTConfig

MODELS: dict[str, tuple[type, type]] = {
    "rnn_classifier": (ClassifierConfig, SequenceClassifier),
    "rnn_lm": (LanguageModelConfig, RNNLanguageModel),
    "vit": (ViTConfig, ViT),
    "mlp_ar": (MLPAutoregressiveConfig, MLPAutoregressive),
    "rnn_forecaster": (RecurrentForecasterConfig, RecurrentForecaster),
    "transformer_forecaster": (TransformerForecasterConfig, TransformerForecaster),
    "seq2seq_rnn": (Seq2SeqRNNConfig, Seq2SeqRNN),
    "seq2seq_transformer": (Seq2SeqTransformerConfig, Seq2SeqTransformer),
    "gpt": (GPTConfig, GPT),
}


def build_model(config):
    """The model that ``config`` (any registered model config) describes."""
    return MODELS[config.name][1](config)


__all__ = [
    "MODELS",
    "ARModel",
    "ClassifierConfig",
    "ForecastHead",
    "GPT",
    "GPTConfig",
    "LanguageModelConfig",
    "MLPAutoregressive",
    "MLPAutoregressiveConfig",
    "MarkovModel",
    "RNNLanguageModel",
    "RecurrentForecaster",
    "RecurrentForecasterConfig",
    "Seq2SeqRNN",
    "Seq2SeqRNNConfig",
    "Seq2SeqTransformer",
    "Seq2SeqTransformerConfig",
    "SequenceClassifier",
    "TransformerForecaster",
    "TransformerForecasterConfig",
    "ViT",
    "ViTConfig",
    "build_model",
]

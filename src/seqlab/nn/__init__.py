"""Building blocks: recurrent layers, attention, positional encodings, a mixture density head."""

from . import functional, masks  # snn.functional.scaled_dot_product_attention, snn.masks.causal_mask
from .attention import KVCache, MultiHeadAttention
from .mdn import MixtureDensityHead, MixtureParams
from .positional import (
    LearnedPositionalEncoding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_encoding,
)
from .recurrent import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    GRUStep,
    LayerNormLSTM,
    LSTMCell,
    LSTMStep,
    Recurrent,
    RNNCell,
    detach_state,
    gru_step,
    init_recurrent_,
    layernorm_lstm_step,
    lstm_step,
    rnn_step,
)
from .transformer import (
    DecoderOnlyStack,
    FeedForward,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    # recurrent
    "RNN",
    "LSTM",
    "GRU",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "LayerNormLSTM",
    "Recurrent",
    "detach_state",
    "init_recurrent_",
    "rnn_step",
    "lstm_step",
    "gru_step",
    "layernorm_lstm_step",
    "LSTMStep",
    "GRUStep",
    # attention
    "functional",
    "masks",
    "KVCache",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEncoding",
    "RotaryEmbedding",
    "sinusoidal_encoding",
    "FeedForward",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerDecoder",
    "Transformer",
    "DecoderOnlyStack",
    # output distributions
    "MixtureDensityHead",
    "MixtureParams",
]

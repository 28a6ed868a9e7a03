"""Building blocks: recurrent layers, attention, positional encodings."""

from .layernorm_lstm import LayerNormLSTM, layernorm_lstm_step
from .recurrent import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    GRUStep,
    LSTMCell,
    LSTMStep,
    RNNCell,
    detach_state,
    gru_step,
    lstm_step,
    rnn_step,
)

__all__ = [
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "LayerNormLSTM", "detach_state",
    "rnn_step", "lstm_step", "gru_step", "layernorm_lstm_step", "LSTMStep", "GRUStep",
]

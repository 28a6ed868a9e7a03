"""Moved: LayerNormLSTM lives in seqlab/nn/recurrent/ (layernorm_lstm.py, its step in equations.py)."""

from .recurrent import LayerNormLSTM, layernorm_lstm_step

__all__ = ["LayerNormLSTM", "layernorm_lstm_step"]

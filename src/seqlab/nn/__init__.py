"""Building blocks: recurrent layers, attention, positional encodings."""

# Attention (issue 4)
from . import functional, masks  # snn.functional.scaled_dot_product_attention, snn.masks.causal_mask
from .attention import KVCache, MultiHeadAttention
from .positional import (
    LearnedPositionalEncoding, RotaryEmbedding, SinusoidalPositionalEncoding, sinusoidal_encoding,
)
from .transformer import (
    DecoderOnlyStack, FeedForward, Transformer, TransformerDecoder, TransformerDecoderLayer,
    TransformerEncoder, TransformerEncoderLayer,
)

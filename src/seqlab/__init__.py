"""seqlab: readable, equation-faithful sequence models on PyTorch."""

__version__ = "0.3.0"

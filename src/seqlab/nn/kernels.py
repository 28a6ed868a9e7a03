"""Moved: the fast paths' ``linear`` and ``tanh`` live in seqlab/nn/recurrent/fast/ops.py, and every
private torch call in seqlab/nn/recurrent/torch_internals.py."""

from .recurrent.fast.ops import linear, tanh

__all__ = ["linear", "tanh"]

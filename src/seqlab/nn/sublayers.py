"""What every Transformer layer is built of: the position-wise feed-forward network (section 3.3) and
the residual connection with its layer norm around each sublayer (section 5.4; the Annotated
Transformer's ``SublayerConnection``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "FeedForward", "activation_name", "sublayer_connection"]

# "gelu_tanh": GELU's tanh approximation, the one GPT-2 was trained with (Hugging Face's "gelu_new").
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}


def activation_name(layer: nn.Module) -> str:
    """'relu', 'gelu' or 'gelu_tanh' for a torch Transformer layer's ``activation`` (function or module)."""
    act = layer.activation
    if act is F.relu or type(act) is nn.ReLU:
        return "relu"
    if act is F.gelu or (type(act) is nn.GELU and act.approximate == "none"):
        return "gelu"
    if type(act) is nn.GELU and act.approximate == "tanh":
        return "gelu_tanh"
    raise ValueError(f"from_torch supports activation relu or gelu, got {act!r}")  # gelu: exact or tanh


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {activation!r}")


class FeedForward(nn.Module):
    """FFN(x) = W_2 dropout(act(W_1 x + b_1)) + b_2, the same at every position: (B, T, d_model) -> (B, T, d_model)."""

    def __init__(self, d_model: int, d_ff: int, *, dropout: float = 0.0, activation: str = "relu", bias: bool = True):
        super().__init__()
        _check_activation(activation)
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(ACTIVATIONS[self.activation](self.linear1(x))))  # (B, T, d_model)


def sublayer_connection(
    x: torch.Tensor, norm: nn.LayerNorm, dropout: nn.Dropout, norm_first: bool, sublayer
) -> tuple[torch.Tensor, object]:
    """The residual connection around one sublayer (the Annotated Transformer's ``SublayerConnection``).

    post-LN: LayerNorm(x + dropout(Sublayer(x)));  pre-LN: x + dropout(Sublayer(LayerNorm(x))).
    ``sublayer(h) -> (out, extra)`` (extra: attention weights, or None); returns (x', extra), shapes of x.
    A function, not a module: the norms and dropouts stay the layer's own (``norm1``, ``dropout1``, ...),
    the parameter names of every saved checkpoint and of torch's layers.
    """
    if norm_first:
        out, extra = sublayer(norm(x))
        return x + dropout(out), extra
    out, extra = sublayer(x)
    return norm(x + dropout(out)), extra

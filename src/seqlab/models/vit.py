"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"), encoder only.

The image is cut into patches; each flattened patch is projected linearly to d_model; a learned
class token is put in front and learned positions are added; a pre-LN Transformer encoder reads
the sequence and a linear head classifies the class token (or the mean of all tokens).

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
    z_l = encoder layers(z_{l-1}),  y = head(LayerNorm(z_L^0))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.positional import LearnedPositionalEncoding
from ..nn.transformer import TransformerEncoder
from ..utils import eval_mode

__all__ = ["ViTConfig", "ViT"]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass(frozen=True, kw_only=True)
class ViTConfig:
    """The ViT's shape; ``image_size`` and ``patch_size`` are an int (square) or (height, width)."""

    name: str = "vit"
    image_size: int | tuple[int, int]
    patch_size: int | tuple[int, int]
    num_classes: int
    d_model: int
    depth: int
    num_heads: int
    d_ff: int
    channels: int = 1
    pool: str = "cls"  # "cls": classify the class token; "mean": the mean of all tokens
    dropout: float = 0.0

    def __post_init__(self):
        for key in ("image_size", "patch_size"):
            v = getattr(self, key)
            if isinstance(v, list):  # a config read back from a checkpoint or TOML list
                object.__setattr__(self, key, tuple(v))
                v = tuple(v)
            ok = (isinstance(v, int) and not isinstance(v, bool)) or (
                isinstance(v, tuple) and len(v) == 2 and all(isinstance(n, int) for n in v)
            )
            if not ok or min(_pair(v)) < 1:
                raise ValueError(f"model.{key} must be a positive int or [height, width], got {v!r}")
        (H, W), (p1, p2) = _pair(self.image_size), _pair(self.patch_size)
        if H % p1 or W % p2:
            raise ValueError(f"model.image_size {(H, W)} must be divisible by model.patch_size {(p1, p2)}")
        for key in ("num_classes", "d_model", "depth", "num_heads", "d_ff", "channels"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.d_model % self.num_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"model.pool must be 'cls' or 'mean', got {self.pool!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example as the model reads it (no batch dim): (H, W) with one channel, else (channels, H, W)."""
        H, W = _pair(self.image_size)
        return (H, W) if self.channels == 1 else (self.channels, H, W)

    def settings_for_input(self, shape: tuple[int, ...]) -> dict[str, Any]:
        """The keys (and values) to change so that the model reads examples of ``shape``, (H, W) or
        (C, H, W); {} if no setting of this config reads it."""
        if len(shape) == 2:
            C, (H, W) = 1, shape
        elif len(shape) == 3:
            C, H, W = shape
        else:
            return {}
        out: dict[str, Any] = {}
        if _pair(self.image_size) != (H, W):
            out["image_size"] = H if H == W else [H, W]
        if self.channels != C:
            out["channels"] = C
        return out


class ViT(nn.Module):
    """Images (B, C, H, W), or (B, H, W) when channels == 1 -> logits (B, num_classes), loss.

    Build it from a config, ``ViT(ViTConfig(...))`` (what the trainer does), or from keywords:
    ``ViT(image_size=8, patch_size=2, num_classes=10, d_model=64, depth=4, num_heads=4, d_ff=128)``.
    """

    def __init__(self, config: ViTConfig | None = None, /, **kwargs):
        super().__init__()
        if config is None:
            config = ViTConfig(**kwargs)
        elif kwargs:
            raise TypeError(f"pass a ViTConfig or keyword arguments, not both (got {sorted(kwargs)})")
        self.config = c = config
        (H, W), (p1, p2) = _pair(c.image_size), _pair(c.patch_size)
        self.grid = (H // p1, W // p2)  # patches along height and width
        num_patches = self.grid[0] * self.grid[1]
        self.patch_embed = nn.Linear(c.channels * p1 * p2, c.d_model)  # E: one flattened patch -> d_model
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model))  # x_class
        self.pos = LearnedPositionalEncoding(c.d_model, max_len=num_patches + 1, dropout=c.dropout)  # E_pos
        self.encoder = TransformerEncoder(
            c.d_model,
            c.num_heads,
            c.d_ff,
            c.depth,
            dropout=c.dropout,
            activation="gelu",
            norm_first=True,
        )  # pre-LN, ends with a LayerNorm
        self.head = nn.Linear(c.d_model, c.num_classes)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, H, W) -> (B, N, p1 * p2 * C), N = (H / p1) (W / p2) patches in row-major order."""
        c = self.config
        (H, W), (p1, p2) = _pair(c.image_size), _pair(c.patch_size)
        given = tuple(x.shape)
        if x.dim() == 3 and c.channels == 1:
            x = x.unsqueeze(1)  # (B, 1, H, W)
        if x.dim() != 4 or tuple(x.shape[1:]) != (c.channels, H, W):
            expected = f"(B, {c.channels}, {H}, {W})" + (f" or (B, {H}, {W})" if c.channels == 1 else "")
            raise ValueError(f"expected images {expected}, got {given}")
        B = x.shape[0]
        h, w = self.grid
        # einops: 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
        x = x.reshape(B, c.channels, h, p1, w, p2)  # (B, C, h, p1, w, p2)
        x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p1, p2, C)
        return x.reshape(B, h * w, p1 * p2 * c.channels)  # (B, N, p1 p2 C)

    def _encode(self, x: torch.Tensor, need_weights: bool):
        patches = self.patchify(x)  # (B, N, p1 p2 C)
        B = patches.shape[0]
        tokens = self.patch_embed(patches)  # (B, N, d_model)
        tokens = torch.cat((self.cls_token.expand(B, -1, -1), tokens), dim=1)  # (B, N + 1, d_model)
        z, weights = self.encoder(self.pos(tokens), need_weights=need_weights)  # (B, N + 1, d_model)
        pooled = z[:, 0] if self.config.pool == "cls" else z.mean(dim=1)  # (B, d_model)
        return self.head(pooled), weights  # (B, num_classes)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        """x (B, C, H, W) or (B, H, W) -> logits (B, num_classes), cross-entropy loss if targets (B,) given."""
        logits, _ = self._encode(x, need_weights=False)
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's attention weights: depth tensors (B, heads, N + 1, N + 1); token 0 is the class token.

        Computed in eval mode (no dropout on the weights), whatever the model's mode; the mode is restored.
        """
        with eval_mode(self):
            _, weights = self._encode(x, need_weights=True)
        return weights

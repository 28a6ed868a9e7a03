"""The optimiser and the learning-rate schedule of a run, both read from ``TrainConfig``."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier of ``train.lr`` at optimiser step ``step`` (0-based)."""
    warm = cfg.warmup_steps
    if cfg.schedule == "noam":
        # "Attention Is All You Need", eq. 3: d^-0.5 min(s^-0.5, s w^-1.5), scaled so the peak
        # (at s = w) is train.lr instead of depending on d_model.
        s, w = step + 1, max(warm, 1)
        return min(s**-0.5, s * w**-1.5) * w**0.5
    if warm and step < warm:
        return (step + 1) / warm
    if cfg.schedule == "cosine":
        progress = (step - warm) / max(total_steps - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0

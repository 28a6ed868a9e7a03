"""The optimiser and the learning-rate schedule of a run, both read from ``TrainConfig``."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


def parameter_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """One group decayed by ``train.weight_decay``; with ``train.decay = "matrices"`` a second, undecayed one
    of the tensors below 2 dimensions (biases, norm gains), as GPT-2 and nanoGPT train."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.decay == "all" or not cfg.weight_decay:
        return [{"params": params, "weight_decay": cfg.weight_decay}]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


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
    if cfg.schedule == "cosine":  # from 1 down to min_lr / lr
        progress = (step - warm) / max(total_steps - warm, 1)
        floor = cfg.min_lr / cfg.lr
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0

"""A mixture density network head (Bishop, "Mixture Density Networks", 1994).

From features h it predicts a mixture of K Gaussians with diagonal covariance over D outputs:

    p(y | h) = sum_k pi_k(h) prod_d N(y_d; mu_kd(h), sigma_kd(h)^2)

    pi = softmax(W_pi h + b_pi)              mixture weights, (..., K), sum to 1
    mu = W_mu h + b_mu                       means, (..., K, D)
    sigma = min_scale + softplus(W_s h + b_s)   scales, (..., K, D), > 0

Trained by the negative log-likelihood, computed in log space:

    -log p(y | h) = -logsumexp_k [ log pi_k + sum_d ( -z_kd^2 / 2 - log sigma_kd - log(2 pi) / 2 ) ],
    z_kd = (y_d - mu_kd) / sigma_kd

so a target far from every component (each density underflows to 0) still has a finite loss
and a gradient, where log(sum_k pi_k N_k) would be log(0) = -inf. ``min_scale`` keeps a
component from collapsing onto a single training point (its likelihood grows without bound).

With K = 1 it is a Gaussian with predicted mean and scale; with K > 1 it can put mass on
several outcomes, which a least-squares model (the mean) cannot: it predicts in between.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "MixtureDensityHead",
    "MixtureParams",
    "mixture_nll",
    "mixture_mean",
    "mixture_variance",
    "mixture_sample",
    "mixture_cdf",
    "mixture_quantile",
]

_LOG_2PI = math.log(2 * math.pi)
# Scales below this are read as this in the log-likelihood: with sigma = 1e-30, z^2 and its
# gradient z^2 / sigma overflow float32 (3.4e38) and turn into inf and NaN. At 1e-6 both stay
# finite for targets up to about 1e7 away from a mean.
_SCALE_FLOOR = 1e-6


class MixtureParams(NamedTuple):
    """A batch of diagonal Gaussian mixtures: K components over D outputs."""

    log_weights: torch.Tensor  # (..., K) log pi_k, log-softmax normalised
    means: torch.Tensor  # (..., K, D)
    scales: torch.Tensor  # (..., K, D), positive


def _check_target(params: MixtureParams, y: torch.Tensor) -> None:
    expected = params.means.shape[:-2] + params.means.shape[-1:]
    if y.shape != expected:
        raise ValueError(f"expected a target of shape {tuple(expected)} (..., D), got {tuple(y.shape)}")


def mixture_log_prob(params: MixtureParams, y: torch.Tensor) -> torch.Tensor:
    """log p(y): params over (..., K, D), y (..., D) -> (...,). Scales below 1e-6 count as 1e-6."""
    _check_target(params, y)
    sigma = params.scales.clamp_min(_SCALE_FLOOR)
    z = (y.unsqueeze(-2) - params.means) / sigma  # (..., K, D)
    log_normal = -0.5 * z**2 - torch.log(sigma) - 0.5 * _LOG_2PI  # (..., K, D)
    return torch.logsumexp(params.log_weights + log_normal.sum(-1), dim=-1)  # (...,)


def mixture_nll(params: MixtureParams, y: torch.Tensor) -> torch.Tensor:
    """-log p(y) per example: (...,). Average it for a loss."""
    return -mixture_log_prob(params, y)


def mixture_mean(params: MixtureParams) -> torch.Tensor:
    """E[y] = sum_k pi_k mu_k: (..., D)."""
    return (params.log_weights.exp().unsqueeze(-1) * params.means).sum(-2)


def mixture_variance(params: MixtureParams) -> torch.Tensor:
    """Var[y_d] = sum_k pi_k (sigma_kd^2 + mu_kd^2) - E[y_d]^2: (..., D)."""
    pi = params.log_weights.exp().unsqueeze(-1)  # (..., K, 1)
    second = (pi * (params.scales**2 + params.means**2)).sum(-2)
    return (second - mixture_mean(params) ** 2).clamp_min(0.0)


def mixture_sample(params: MixtureParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per mixture: pick k ~ pi, then y = mu_k + sigma_k * eps: (..., D)."""
    *batch, K, D = params.means.shape
    pi = params.log_weights.exp().reshape(-1, K)  # (N, K)
    k = torch.multinomial(pi, 1, generator=generator)  # (N, 1)
    idx = k[:, :, None].expand(-1, 1, D)  # (N, 1, D)
    mu = params.means.reshape(-1, K, D).gather(1, idx)[:, 0]  # (N, D)
    sigma = params.scales.reshape(-1, K, D).gather(1, idx)[:, 0]  # (N, D)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return (mu + sigma * eps).reshape(*batch, D)


def mixture_cdf(params: MixtureParams, y: torch.Tensor) -> torch.Tensor:
    """P(Y_d <= y_d) of each output's marginal, sum_k pi_k Phi((y_d - mu_kd) / sigma_kd): (..., D)."""
    _check_target(params, y)
    z = (y.unsqueeze(-2) - params.means) / params.scales  # (..., K, D)
    phi = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return (params.log_weights.exp().unsqueeze(-1) * phi).sum(-2)


def mixture_quantile(params: MixtureParams, q: float, iters: int = 64) -> torch.Tensor:
    """The q-quantile of each output's marginal distribution, by bisection on the CDF: (..., D).

    The marginal of a mixture has no closed-form quantile (unless K = 1); its CDF is monotone,
    and 64 halvings of a bracket of 20 standard deviations are far below float precision.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    lo = (params.means - 10 * params.scales).amin(-2)  # (..., D)
    hi = (params.means + 10 * params.scales).amax(-2)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = mixture_cdf(params, mid) < q
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


class MixtureDensityHead(nn.Module):
    """h (..., in_features) -> MixtureParams of ``num_components`` Gaussians over ``out_features`` outputs.

    ``nll``, ``mean``, ``variance``, ``sample``, ``quantile`` take the params the forward returned.
    """

    def __init__(self, in_features: int, out_features: int, num_components: int, *, min_scale: float = 1e-3):
        super().__init__()
        for key, value in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("num_components", num_components),
        ):
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        if min_scale <= 0:
            raise ValueError(f"min_scale must be > 0, got {min_scale}")
        self.in_features, self.out_features, self.num_components = in_features, out_features, num_components
        self.min_scale = min_scale
        K, D = num_components, out_features
        self.weights = nn.Linear(in_features, K)  # logits of pi
        self.means = nn.Linear(in_features, K * D)
        self.scales = nn.Linear(in_features, K * D)  # before softplus

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"num_components={self.num_components}, min_scale={self.min_scale}"
        )

    def forward(self, h: torch.Tensor) -> MixtureParams:
        """h (..., in_features) -> log pi (..., K), mu (..., K, D), sigma (..., K, D)."""
        if h.size(-1) != self.in_features:
            raise ValueError(f"expected features (..., {self.in_features}), got shape {tuple(h.shape)}")
        K, D = self.num_components, self.out_features
        log_pi = F.log_softmax(self.weights(h), dim=-1)  # (..., K)
        mu = self.means(h).unflatten(-1, (K, D))  # (..., K * D) -> (..., K, D)
        sigma = self.min_scale + F.softplus(self.scales(h)).unflatten(-1, (K, D))  # (..., K, D)
        return MixtureParams(log_pi, mu, sigma)

    def nll(self, params: MixtureParams, y: torch.Tensor) -> torch.Tensor:
        """-log p(y | h) per example, y (..., D) -> (...,)."""
        return mixture_nll(params, y)

    def mean(self, params: MixtureParams) -> torch.Tensor:
        return mixture_mean(params)

    def variance(self, params: MixtureParams) -> torch.Tensor:
        return mixture_variance(params)

    @torch.no_grad()
    def sample(self, params: MixtureParams, generator: torch.Generator | None = None) -> torch.Tensor:
        return mixture_sample(params, generator)

    @torch.no_grad()
    def quantile(self, params: MixtureParams, q: float) -> torch.Tensor:
        return mixture_quantile(params, q)

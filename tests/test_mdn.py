"""MixtureDensityHead: its NLL against the density written out in float64, stability, moments,
quantiles, and a two-mode target it must recover where a single Gaussian cannot."""

import math

import numpy as np
import pytest
import torch

import seqlab.nn as snn
from seqlab.nn.mdn import (
    MixtureParams,
    mixture_cdf,
    mixture_mean,
    mixture_nll,
    mixture_quantile,
    mixture_sample,
    mixture_variance,
)


def direct_nll(log_w, mu, sigma, y) -> np.ndarray:
    """-log sum_k pi_k prod_d N(y_d; mu_kd, sigma_kd^2), the formula as written, in float64."""
    pi = np.exp(np.asarray(log_w, dtype=np.float64))  # (N, K)
    mu, sigma, y = (np.asarray(a, dtype=np.float64) for a in (mu, sigma, y))
    dens = np.exp(-0.5 * ((y[:, None, :] - mu) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)  # (N, K, D)
    return -np.log((pi * dens.prod(-1)).sum(-1))


@pytest.mark.parametrize("batch", [(5,), (2, 3)])
@pytest.mark.parametrize("D,K", [(1, 1), (1, 3), (2, 4)])
def test_head_shapes_and_constraints(batch, D, K):
    torch.manual_seed(0)
    head = snn.MixtureDensityHead(6, D, K)
    p = head(torch.randn(*batch, 6))
    assert p.log_weights.shape == (*batch, K)
    assert p.means.shape == p.scales.shape == (*batch, K, D)
    torch.testing.assert_close(p.log_weights.exp().sum(-1), torch.ones(batch))
    assert (p.scales >= head.min_scale).all()
    y = torch.randn(*batch, D)
    assert head.nll(p, y).shape == batch
    assert (
        head.mean(p).shape
        == head.variance(p).shape
        == head.sample(p).shape
        == head.quantile(p, 0.3).shape
        == (*batch, D)
    )


def test_nll_matches_the_direct_formula_in_float64():
    torch.manual_seed(1)
    head = snn.MixtureDensityHead(4, 2, 3)
    h, y = torch.randn(64, 4), 2 * torch.randn(64, 2)
    p = head(h)
    ref = direct_nll(p.log_weights.detach(), p.means.detach(), p.scales.detach(), y)
    np.testing.assert_allclose(head.nll(p, y).detach().numpy(), ref, rtol=1e-5, atol=1e-5)
    # And in float64 end to end, far tighter.
    p64 = MixtureParams(*(t.detach().double() for t in p))
    np.testing.assert_allclose(mixture_nll(p64, y.double()).numpy(), ref, rtol=1e-12)


def test_nll_is_finite_for_far_targets_and_tiny_scales():
    log_w = torch.log(torch.tensor([[0.3, 0.7]]))
    mu = torch.tensor([[[0.0], [1.0]]], requires_grad=True)
    for scale, y in ((1.0, 1e4), (1e-8, 1.0), (1e-30, 1.0), (1e-3, -1e6)):
        sigma = torch.full((1, 2, 1), scale, requires_grad=True)
        nll = mixture_nll(MixtureParams(log_w, mu, sigma), torch.tensor([[y]]))
        nll.sum().backward()
        assert torch.isfinite(nll).all(), (scale, y, nll)
        assert torch.isfinite(mu.grad).all() and torch.isfinite(sigma.grad).all(), (scale, y)
        mu.grad = None
    # Far target at moderate scale: the logsumexp value, where exp() of each term underflows.
    nll = mixture_nll(MixtureParams(log_w, mu.detach(), torch.ones(1, 2, 1)), torch.tensor([[1e4]]))
    expected = -(math.log(0.7) - 0.5 * (1e4 - 1) ** 2 - 0.5 * math.log(2 * math.pi))
    assert nll.item() == pytest.approx(expected, rel=1e-6)
    # Through the head: scales pushed to their floor, a target a million away.
    head = snn.MixtureDensityHead(3, 1, 2)
    with torch.no_grad():
        head.scales.bias.fill_(-1e4)
    p = head(torch.randn(4, 3))
    assert torch.allclose(p.scales, torch.full_like(p.scales, head.min_scale))
    loss = head.nll(p, torch.full((4, 1), 1e6)).mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(q.grad).all() for q in head.parameters())


def test_mean_variance_and_samples_agree():
    p = MixtureParams(
        torch.log(torch.tensor([[0.25, 0.75]])), torch.tensor([[[-2.0], [2.0]]]), torch.tensor([[[0.5], [1.0]]])
    )
    assert mixture_mean(p).item() == pytest.approx(0.25 * -2 + 0.75 * 2)
    var = 0.25 * (0.25 + 4) + 0.75 * (1 + 4) - 1.0**2
    assert mixture_variance(p).item() == pytest.approx(var)
    g = torch.Generator().manual_seed(0)
    rep = MixtureParams(*(t.expand(40_000, *t.shape[1:]) for t in p))
    draws = mixture_sample(rep, generator=g)  # (40000, 1)
    assert draws.mean().item() == pytest.approx(1.0, abs=0.03)
    assert draws.var().item() == pytest.approx(var, rel=0.03)
    Phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    below_zero = 0.25 * Phi(2 / 0.5) + 0.75 * Phi(-2 / 1.0)
    assert (draws < 0).float().mean().item() == pytest.approx(below_zero, abs=0.01)
    torch.testing.assert_close(mixture_cdf(p, torch.zeros(1, 1)), torch.tensor([[below_zero]]))


def test_quantiles_invert_the_cdf():
    one = MixtureParams(
        torch.zeros(3, 1), torch.tensor([[[0.0]], [[5.0]], [[-1.0]]]), torch.tensor([[[1.0]], [[2.0]], [[0.1]]])
    )
    normal = torch.distributions.Normal(one.means[:, 0], one.scales[:, 0])
    for q in (0.1, 0.5, 0.9):
        torch.testing.assert_close(mixture_quantile(one, q), normal.icdf(torch.tensor(q)), atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    p = snn.MixtureDensityHead(2, 2, 3)(torch.randn(8, 2))
    for q in (0.1, 0.9):
        torch.testing.assert_close(mixture_cdf(p, mixture_quantile(p, q)), torch.full((8, 2), q), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="q must be in"):
        mixture_quantile(p, 1.0)


def _fit(K: int, x, y, steps: int = 600):
    torch.manual_seed(0)
    head = snn.MixtureDensityHead(1, 1, K)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(steps):
        loss = head.nll(head(x), y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head, head.nll(head(x), y).mean().item()


def test_bimodal_target_recovers_both_modes_and_beats_one_gaussian():
    # y = x + 1 or x - 1 with equal probability, plus N(0, 0.1^2): the mean (x) is never observed.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1024, 1, generator=g) * 2 - 1
    sign = torch.randint(0, 2, (1024, 1), generator=g) * 2 - 1
    y = x + sign + 0.1 * torch.randn(1024, 1, generator=g)
    mdn, nll_mdn = _fit(2, x, y)
    gauss, nll_gauss = _fit(1, x, y)
    # Closed forms: one Gaussian at best 0.5 log(2 pi e Var), Var = 1 + 0.01;
    # two modes: 0.5 log(2 pi e 0.01) + log 2.
    assert nll_gauss == pytest.approx(0.5 * math.log(2 * math.pi * math.e * 1.01), abs=0.05)
    assert nll_mdn == pytest.approx(0.5 * math.log(2 * math.pi * math.e * 0.01) + math.log(2), abs=0.05)
    assert nll_mdn < nll_gauss - 1.0
    with torch.no_grad():
        for x0 in (-0.5, 0.0, 0.5):
            p = mdn(torch.tensor([[x0]]))
            means = p.means[0, :, 0].sort().values
            torch.testing.assert_close(means, torch.tensor([x0 - 1, x0 + 1]), atol=0.05, rtol=0)
            torch.testing.assert_close(p.log_weights.exp()[0], torch.tensor([0.5, 0.5]), atol=0.05, rtol=0)
            torch.testing.assert_close(p.scales[0, :, 0], torch.tensor([0.1, 0.1]), atol=0.02, rtol=0)
            assert mdn.mean(p).item() == pytest.approx(x0, abs=0.05)  # the mean falls between the modes
            # The 80% interval spans both modes; the single Gaussian's median sits where no data is.
            assert mdn.quantile(p, 0.1).item() < x0 - 0.9 and mdn.quantile(p, 0.9).item() > x0 + 0.9


@pytest.mark.parametrize(
    "args,message",
    [
        ((0, 1, 2), "in_features must be >= 1, got 0"),
        ((3, 1, 0), "num_components must be >= 1, got 0"),
    ],
)
def test_head_errors(args, message):
    with pytest.raises(ValueError, match=message):
        snn.MixtureDensityHead(*args)
    head = snn.MixtureDensityHead(3, 2, 2)
    with pytest.raises(ValueError, match=r"expected features \(\.\.\., 3\), got shape \(4, 5\)"):
        head(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"expected a target of shape \(4, 2\) \(\.\.\., D\), got \(4, 1\)"):
        head.nll(head(torch.randn(4, 3)), torch.randn(4, 1))

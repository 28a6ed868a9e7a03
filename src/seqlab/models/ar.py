"""The linear autoregressive model AR(tau), fit in closed form.

    x_t = b + w_1 x_{t-1} + w_2 x_{t-2} + ... + w_tau x_{t-tau} + e_t

keeps only the last tau values of the past (the lecture's first answer to "the past grows with
t"). The coefficients minimise the squared one-step error over every t with a full window,
t = tau .. L-1, which is ordinary least squares on the lagged design matrix: exactly what
statsmodels' ``AutoReg(series, lags=tau, trend="c")`` estimates, and the baseline every neural
forecaster has to beat.

Windows follow ``seqlab.data.ar_windows``: oldest value first, so ``window[:, -1]`` is x_{t-1}.
``weights`` is ordered lag 1 first, so ``predict`` reverses the window before the dot product.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_float64(values, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinite values; fill or drop them first")
    return arr


def lagged_design(series: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix X (L - tau, 1 + tau) with rows [1, x_{t-1}, ..., x_{t-tau}] and targets x_t (L - tau,)."""
    L = len(series)
    lags = [series[order - k : L - k] for k in range(1, order + 1)]  # lag k: x_{t-k} for t = tau .. L-1
    X = np.column_stack([np.ones(L - order), *lags])  # (L - tau, 1 + tau)
    return X, series[order:]


class ARModel:
    """AR(tau) with intercept: ``ARModel(order).fit(series)``; then ``weights`` (tau,) lag 1 first and ``bias``.

    Not an ``nn.Module``: it has no training loop. ``predict`` maps windows (N, tau) or (N, tau, 1),
    oldest value first, to one-step predictions (N,); ``forecast`` iterates from the end of a history.
    """

    def __init__(self, order: int):
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order!r}")
        self.order = order
        self.weights: np.ndarray | None = None  # (tau,) w_1 .. w_tau
        self.bias: float | None = None
        self.residual_std: float | None = None  # root mean squared one-step residual on the fitted series

    def __repr__(self) -> str:
        fitted = "unfitted" if self.weights is None else f"bias={self.bias:.4g}"
        return f"ARModel(order={self.order}, {fitted})"

    def fit(self, series) -> ARModel:
        """Least squares on every full window of ``series`` (a 1-D array or tensor of L > 2 tau values)."""
        s = _as_float64(series, "series")
        if s.ndim != 1:
            raise ValueError(f"expected a 1-D series of shape (L,), got shape {s.shape}")
        if len(s) < 2 * self.order + 1:
            raise ValueError(
                f"a series of {len(s)} values is too short for AR({self.order}): need at least "
                f"2 * order + 1 = {2 * self.order + 1} so that the least squares problem is determined"
            )
        X, y = lagged_design(s, self.order)
        # lstsq (an SVD) rather than the normal equations: no squared condition number.
        theta, *_ = np.linalg.lstsq(X, y, rcond=None)
        self.bias, self.weights = float(theta[0]), theta[1:]
        self.residual_std = float(np.sqrt(np.mean((y - X @ theta) ** 2)))
        return self

    def _check_fitted(self) -> None:
        if self.weights is None:
            raise RuntimeError("ARModel is not fitted: call .fit(series) first")

    def predict(self, windows) -> np.ndarray:
        """x_hat_t = b + sum_k w_k x_{t-k}: windows (N, tau) or (N, tau, 1), oldest first -> (N,)."""
        self._check_fitted()
        w = _as_float64(windows, "windows")
        if w.ndim == 3 and w.shape[-1] == 1:
            w = w[..., 0]  # (N, tau)
        if w.ndim != 2 or w.shape[1] != self.order:
            raise ValueError(f"expected windows of shape (N, {self.order}) or (N, {self.order}, 1), got {w.shape}")
        return self.bias + w[:, ::-1] @ self.weights  # newest first meets lag 1 first: (N,)

    def forecast(self, history, steps: int) -> np.ndarray:
        """The next ``steps`` values after ``history`` (L >= tau,), each prediction fed back as an input."""
        self._check_fitted()
        h = _as_float64(history, "history")
        if h.ndim != 1 or len(h) < self.order:
            raise ValueError(f"expected a 1-D history of at least {self.order} values, got shape {h.shape}")
        window = list(h[-self.order :])
        out = []
        for _ in range(steps):
            nxt = float(self.predict(np.array(window)[None])[0])
            out.append(nxt)
            window = window[1:] + [nxt]
        return np.array(out)

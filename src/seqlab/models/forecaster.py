"""Neural forecasters over AR(tau) windows, trained by the engine: x (B, tau, 1) -> x_hat_t (B, 1).

- ``MLPAutoregressive`` ("mlp_ar"): the AR(tau) model with a hidden layer in place of the linear
  map, x_hat_t = f(x_{t-tau}, ..., x_{t-1}). Still only the last tau values.
- ``RecurrentForecaster`` ("rnn_forecaster", ``cell`` = rnn, lstm or gru): the latent
  autoregressive model. H_t = f(H_{t-1}, x_{t-1}) summarises the window in a hidden state and
  x_hat_t = g(H_t) reads the last one.
- ``TransformerForecaster`` ("transformer_forecaster"): every position of the window attends to
  every other; the last position's output predicts the next value.

Each has a point head (linear, trained by the mean squared error) or, with ``num_components``
> 0, a mixture density head (trained by the negative log-likelihood); the model's output is then
the mixture's mean and ``distribution(x)`` gives the whole predictive distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import seqlab.nn as snn

from ..config import check_at_least, check_choice, check_fraction
from ..utils import eval_mode
from .recurrent import check_recurrent, recurrent_encoder

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _check_common(cfg) -> None:
    check_at_least("model", cfg, "input_size", "output_size")
    check_at_least("model", cfg, "num_components", minimum=0)  # 0: a point forecast
    check_fraction("model", cfg, "dropout")


class ForecastHead(nn.Module):
    """Features (B, F) -> prediction (B, D) and its loss: MSE for a point head, mixture NLL for an MDN head."""

    def __init__(self, in_features: int, out_features: int, num_components: int = 0):
        super().__init__()
        self.out_features = out_features
        if num_components:
            self.mdn = snn.MixtureDensityHead(in_features, out_features, num_components)
        else:
            self.linear = nn.Linear(in_features, out_features)

    @property
    def probabilistic(self) -> bool:
        return hasattr(self, "mdn")

    def forward(self, h: torch.Tensor, targets: torch.Tensor | None = None):
        """h (B, F) -> (B, D), and the loss given targets (B, D)."""
        if targets is not None and targets.shape != (h.size(0), self.out_features):
            raise ValueError(
                f"expected targets of shape ({h.size(0)}, {self.out_features}), got {tuple(targets.shape)}"
            )
        if not self.probabilistic:
            y_hat = self.linear(h)  # (B, D)
            return y_hat, (F.mse_loss(y_hat, targets) if targets is not None else None)
        params = self.mdn(h)  # log pi (B, K), mu and sigma (B, K, D)
        loss = self.mdn.nll(params, targets).mean() if targets is not None else None
        return self.mdn.mean(params), loss


class _Forecaster(nn.Module):
    """The shared contract: ``features`` (B, tau, C) -> (B, F) is the family's own part."""

    config: object
    head: ForecastHead

    def _check(self, x: torch.Tensor) -> None:
        """(B, tau, C); a model with ``config.tau`` (a fixed window) takes exactly tau steps, others any."""
        C, tau = self.config.input_size, getattr(self.config, "tau", None)
        if tau is None:
            if x.dim() != 3 or x.size(-1) != C:
                raise ValueError(f"expected windows (B, tau, {C}), got shape {tuple(x.shape)}")
        elif x.dim() != 3 or x.shape[1:] != (tau, C):
            raise ValueError(f"expected windows (B, {tau}, {C}) (model.tau = {tau}), got shape {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        """x (B, tau, C), oldest value first -> x_hat_t (B, D), and the loss given targets (B, D)."""
        self._check(x)
        return self.head(self.features(x), targets)

    @torch.no_grad()
    def distribution(self, x: torch.Tensor) -> snn.MixtureParams:
        """The predictive mixture for windows x (B, tau, C); only with ``num_components`` > 0."""
        if not self.head.probabilistic:
            raise ValueError(
                f"{type(self).__name__} has a point head (model.num_components = 0): "
                f"no predictive distribution; set model.num_components >= 1"
            )
        self._check(x)
        return self.head.mdn(self.features(x))


@dataclass(frozen=True)
class MLPAutoregressiveConfig:
    name: str = "mlp_ar"
    tau: int = 10  # window length: the model sees exactly this many past values
    input_size: int = 1
    output_size: int = 1
    hidden_size: int = 64
    num_layers: int = 2  # hidden layers
    activation: str = "relu"
    dropout: float = 0.0
    num_components: int = 0  # 0: point forecast (MSE); K > 0: K-component mixture density head (NLL)

    def __post_init__(self):
        _check_common(self)
        check_at_least("model", self, "tau", "hidden_size", "num_layers")
        check_choice("model", self, "activation", tuple(ACTIVATIONS))


class MLPAutoregressive(_Forecaster):
    """x_hat_t = head(MLP([x_{t-tau}, ..., x_{t-1}])): the window flattened, ``num_layers`` hidden layers."""

    def __init__(self, config: MLPAutoregressiveConfig):
        super().__init__()
        self.config = config
        layers, width = [], config.tau * config.input_size
        for _ in range(config.num_layers):
            layers += [
                nn.Linear(width, config.hidden_size),
                ACTIVATIONS[config.activation](),
                nn.Dropout(config.dropout),
            ]
            width = config.hidden_size
        self.mlp = nn.Sequential(*layers)
        self.head = ForecastHead(width, config.output_size, config.num_components)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.flatten(1))  # (B, tau, C) -> (B, tau * C) -> (B, hidden)


@dataclass(frozen=True)
class RecurrentForecasterConfig:
    name: str = "rnn_forecaster"
    cell: str = "lstm"  # "rnn", "lstm", "gru" or "layernorm_lstm"
    impl: str = "fused"
    input_size: int = 1
    output_size: int = 1
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    num_components: int = 0  # 0: point forecast (MSE); K > 0: K-component mixture density head (NLL)
    init: str = "default"  # "default" (torch's), "chrono" (forget/update-gate biases for T_max) or "orthogonal"
    forget_bias: float = 0.0  # added to the forget (LSTM) / update (GRU) gate's bias; 1.0: Gers et al. 2000
    chrono_max: int = 0  # T_max for init = "chrono"; 0: the data's sequence length

    def __post_init__(self):
        _check_common(self)
        check_recurrent(self)
        check_at_least("model", self, "hidden_size", "num_layers")


class RecurrentForecaster(_Forecaster):
    """H_t = cell(x_{t-1}, H_{t-1}) over the window; x_hat_t = head(H_t) from the top layer's last state."""

    def __init__(self, config: RecurrentForecasterConfig):
        super().__init__()
        self.config = config
        self.rnn = recurrent_encoder(config, config.input_size)
        self.head = ForecastHead(config.hidden_size, config.output_size, config.num_components)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)  # (B, tau, H)
        return h[:, -1]  # (B, H): H_t, having read x_{t-tau} .. x_{t-1}


@dataclass(frozen=True)
class TransformerForecasterConfig:
    name: str = "transformer_forecaster"
    tau: int = 10  # window length: the model sees exactly this many past values (one learned position each)
    input_size: int = 1
    output_size: int = 1
    d_model: int = 32
    num_heads: int = 4
    d_ff: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    num_components: int = 0  # 0: point forecast (MSE); K > 0: K-component mixture density head (NLL)

    def __post_init__(self):
        _check_common(self)
        check_at_least("model", self, "tau", "d_model", "num_heads", "d_ff", "num_layers")
        if self.d_model % self.num_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})")


class TransformerForecaster(_Forecaster):
    """Values embedded linearly plus learned positions, a pre-LN encoder, the last position's output -> head."""

    def __init__(self, config: TransformerForecasterConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Linear(config.input_size, config.d_model)
        self.pos = snn.LearnedPositionalEncoding(config.d_model, max_len=config.tau, dropout=config.dropout)
        # Pre-LN: trains without warm-up at the small budgets forecasting runs use.
        self.encoder = snn.TransformerEncoder(
            config.d_model, config.num_heads, config.d_ff, config.num_layers, dropout=config.dropout, norm_first=True
        )
        self.head = ForecastHead(config.d_model, config.output_size, config.num_components)

    def _encode(self, x: torch.Tensor, need_weights: bool):
        z = self.pos(self.embed(x))  # (B, tau, d_model)
        return self.encoder(z, need_weights=need_weights)  # (B, tau, d_model), [(B, H, tau, tau)] or None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z, _ = self._encode(x, need_weights=False)  # (B, tau, d_model)
        return z[:, -1]  # (B, d_model): the position of x_{t-1}

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's attention weights for windows x (B, tau, C): num_layers tensors (B, heads, tau, tau),
        row i being how position i (x_{t-tau+i}) spreads its attention over the window.

        Computed in eval mode (no dropout on the weights), whatever the model's mode; the mode is restored.
        """
        self._check(x)
        with eval_mode(self):
            _, weights = self._encode(x, need_weights=True)
        return weights

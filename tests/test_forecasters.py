"""The engine-trained forecasters: shapes, the point and mixture heads' losses, rebuild from config, errors."""

import pytest
import torch
import torch.nn.functional as F

from seqlab.config import to_dict
from seqlab.models import (
    MODELS,
    MLPAutoregressiveConfig,
    RecurrentForecasterConfig,
    TransformerForecasterConfig,
    build_model,
)
from seqlab.nn.mdn import mixture_nll

CONFIGS = [
    MLPAutoregressiveConfig(tau=6, hidden_size=8),
    RecurrentForecasterConfig(cell="rnn", hidden_size=8),
    RecurrentForecasterConfig(cell="lstm", hidden_size=8, num_layers=2),
    RecurrentForecasterConfig(cell="gru", hidden_size=8, impl="reference"),
    TransformerForecasterConfig(tau=6, d_model=8, num_heads=2, d_ff=16, num_layers=1),
]


@pytest.mark.parametrize("components", [0, 2])
@pytest.mark.parametrize("base", CONFIGS, ids=lambda c: f"{c.name}-{getattr(c, 'cell', '')}")
def test_forward_contract_losses_and_rebuild(base, components):
    cfg = type(base)(**{**to_dict(base), "num_components": components})
    torch.manual_seed(0)
    model = build_model(cfg)
    x, y = torch.randn(5, 6, 1), torch.randn(5, 1)
    out, loss = model(x, y)
    assert out.shape == (5, 1) and loss.shape == ()
    assert model(x)[1] is None
    if components == 0:
        torch.testing.assert_close(loss, F.mse_loss(out, y))
        with pytest.raises(ValueError, match="has a point head"):
            model.distribution(x)
    else:
        params = model.distribution(x)
        assert params.log_weights.shape == (5, 2) and params.means.shape == (5, 2, 1)
        torch.testing.assert_close(loss, mixture_nll(params, y).mean())
        torch.testing.assert_close(out, (params.log_weights.exp().unsqueeze(-1) * params.means).sum(1))
    # The config in a checkpoint rebuilds the same model.
    name = to_dict(cfg)["name"]
    again = MODELS[name][1](MODELS[name][0](**to_dict(cfg)))
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again(x)[0], out)


def test_recurrent_forecaster_reads_the_last_hidden_state():
    torch.manual_seed(0)
    model = build_model(RecurrentForecasterConfig(cell="lstm", hidden_size=8))
    x = torch.randn(3, 6, 1)
    lstm = torch.nn.LSTM(1, 8, batch_first=True)
    lstm.load_state_dict({k: v for k, v in model.rnn.state_dict().items()})
    h, _ = lstm(x)  # (3, 6, 8)
    torch.testing.assert_close(model(x)[0], model.head.linear(h[:, -1]), atol=1e-6, rtol=1e-5)


def test_mlp_ar_learns_a_nonlinear_recursion():
    # The logistic map x_t = 3.9 x_{t-1} (1 - x_{t-1}) is chaotic: a linear AR(2) explains little
    # of it, a small MLP learns the parabola.
    s = [0.3]
    for _ in range(600):
        s.append(3.9 * s[-1] * (1 - s[-1]))
    s = torch.tensor(s)
    x = torch.stack([s[:-2], s[1:-1]], 1).unsqueeze(-1)  # (N, 2, 1): x_{t-2}, x_{t-1}
    y = s[2:, None]
    torch.manual_seed(0)
    model = build_model(MLPAutoregressiveConfig(tau=2, hidden_size=32, activation="tanh"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    linear = torch.linalg.lstsq(torch.cat([x[:, :, 0], torch.ones(len(x), 1)], 1), y).solution
    linear_mse = F.mse_loss(torch.cat([x[:, :, 0], torch.ones(len(x), 1)], 1) @ linear, y).item()
    assert model(x, y)[1].item() < 0.1 * linear_mse


@pytest.mark.parametrize(
    "cfg,x_shape,message",
    [
        (MLPAutoregressiveConfig(tau=6), (2, 5, 1), "expected windows (B, 6, 1) (model.tau = 6), got shape (2, 5, 1)"),
        (RecurrentForecasterConfig(), (2, 5), "expected windows (B, tau, 1), got shape (2, 5)"),
        (
            TransformerForecasterConfig(tau=4),
            (2, 5, 1),
            "expected windows (B, 4, 1) (model.tau = 4), got shape (2, 5, 1)",
        ),
        # A shorter window would fit the position table, but the model was trained on tau steps.
        (
            TransformerForecasterConfig(tau=4),
            (2, 3, 1),
            "expected windows (B, 4, 1) (model.tau = 4), got shape (2, 3, 1)",
        ),
        (MLPAutoregressiveConfig(tau=4), (2, 4, 2), "expected windows (B, 4, 1) (model.tau = 4), got shape (2, 4, 2)"),
    ],
)
def test_shape_errors(cfg, x_shape, message):
    with pytest.raises(ValueError) as err:
        build_model(cfg)(torch.randn(*x_shape))
    assert message in str(err.value)


@pytest.mark.parametrize(
    "make,message",
    [
        (
            lambda: RecurrentForecasterConfig(cell="lstmx"),
            "model.cell must be one of rnn, lstm, gru, layernorm_lstm, got 'lstmx'",
        ),
        (lambda: MLPAutoregressiveConfig(num_components=-1), "model.num_components must be >= 0"),
        (
            lambda: TransformerForecasterConfig(d_model=10, num_heads=4),
            "model.d_model (10) must be divisible by model.num_heads (4)",
        ),
        (lambda: MLPAutoregressiveConfig(activation="gelu"), "model.activation must be one of relu, tanh, got 'gelu'"),
    ],
)
def test_config_errors(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert message in str(err.value)


def test_transformer_forecaster_attention_weights():
    torch.manual_seed(0)
    cfg = TransformerForecasterConfig(tau=5, d_model=8, num_heads=2, d_ff=16, num_layers=2, dropout=0.5)
    model = build_model(cfg)  # train mode: dropout would perturb the weights
    x = torch.randn(3, 5, 1)
    weights = model.attention_weights(x)
    assert model.training and all(m.training for m in model.modules())
    assert len(weights) == 2 and all(w.shape == (3, 2, 5, 5) for w in weights)
    for w in weights:
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 5))
    # Layer 0 by hand (pre-LN, eval mode): softmax(q k^T / sqrt(d_h)) of the normalised embedded window.
    model.eval()
    layer = model.encoder.layers[0]
    h = layer.norm1(model.pos(model.embed(x)))  # (3, 5, 8)
    attn = layer.self_attn
    q = attn.q_proj(h).view(3, 5, 2, 4).transpose(1, 2)  # (3, 2, 5, 4)
    k = attn.k_proj(h).view(3, 5, 2, 4).transpose(1, 2)  # (3, 2, 5, 4)
    torch.testing.assert_close(weights[0], torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"expected windows \(B, 5, 1\) \(model.tau = 5\), got shape \(3, 4, 1\)"):
        model.attention_weights(x[:, 1:])

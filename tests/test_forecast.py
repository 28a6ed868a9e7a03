"""seqlab forecast: the JSON's shape, the naive floor, AR beating it, iterated forecasts, the CLI."""

import json

import numpy as np
import pytest
import torch

from seqlab.cli import main
from seqlab.config import ConfigError
from seqlab.data import CsvSeriesConfig, SunspotsConfig, build_sunspots
from seqlab.data.series import build_series_csv
from seqlab.experiments import forecast
from seqlab.experiments.forecast import ForecastSettings, iterate, markdown_table, run_forecast, train_forecaster
from seqlab.models import ARModel
from seqlab.nn.mdn import MixtureParams

TINY = dict(budget_steps=6, batch_size=16, samples=20)


@pytest.fixture(scope="module")
def sunspots_fit():
    """The result, and the trained networks (caught on their way out of train_forecaster)."""
    models = {}

    def keep(name, *args, **kwargs):
        model, fit = train_forecaster(name, *args, **kwargs)
        models[name] = model
        return model, fit

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(forecast, "train_forecaster", keep)
        result = run_forecast(ForecastSettings(models=("ar", "mlp_ar", "rnn", "lstm", "gru", "transformer"), **TINY))
    return result, models


@pytest.fixture(scope="module")
def sunspots_result(sunspots_fit):
    return sunspots_fit[0]


def test_metrics_shape_naive_values_and_ar_beats_naive(sunspots_result):
    r = sunspots_result
    assert list(r.metrics) == ["naive", "ar", "mlp_ar", "rnn", "lstm", "gru", "transformer", "lstm_mdn"]
    for per in r.metrics.values():
        assert list(per) == [1, 5, 10]
        assert all(set(m) == {"rmse", "mae"} and 0 <= m["mae"] <= m["rmse"] for m in per.values())
    # The test part: the last 15% of the 309 years (46), each horizon over the same targets.
    assert list(r.targets) == list(range(263, 309)) and r.split_index == (217, 263)
    s = r.series
    for h in (1, 5, 10):
        err = s[263:] - s[263 - h : 309 - h]  # naive: the value h years before
        assert r.metrics["naive"][h]["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
        assert r.metrics["naive"][h]["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
    assert r.metrics["ar"][1]["rmse"] < r.metrics["naive"][1]["rmse"]
    assert r.metrics["ar"][1]["mae"] < r.metrics["naive"][1]["mae"]
    for lo, hi in r.band.values():
        assert lo.shape == hi.shape == (46,) and (lo <= hi).all()
    table = markdown_table(r).splitlines()
    assert table[0] == "| model | h=1 RMSE | h=1 MAE | h=5 RMSE | h=5 MAE | h=10 RMSE | h=10 MAE |"
    assert len(table) == 2 + 8 and table[2].startswith("| naive | ")


def test_ar_forecasts_are_iterated_from_the_true_window(sunspots_result):
    """ar's h-step forecast of year t equals ARModel.forecast from the values up to t - h, in original units."""
    r = sunspots_result
    info = build_sunspots(SunspotsConfig(tau=9)).info
    scaler = info["scaler"]
    z = scaler.transform(r.series)
    ar = ARModel(9).fit(z[:217])
    for t in [263, 280, 308]:
        for h in (1, 5, 10):
            expected = scaler.inverse(ar.forecast(z[: t - h + 1], h)[-1])
            assert r.predictions["ar"][h][t - 263] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_network_forecasts_are_the_model_on_relative_windows_fed_back(sunspots_fit, name):
    """h = 1: x_hat_t = inverse(model(w - last) + last), w the 9 scaled values before t; h = 5 feeds it back."""
    r, models = sunspots_fit
    model = models[name]
    scaler = build_sunspots(SunspotsConfig(tau=9)).info["scaler"]
    z = scaler.transform(r.series)

    def step(w):  # (9,) scaled window, oldest first -> the next scaled value
        with torch.no_grad():
            y, _ = model(torch.as_tensor(w - w[-1], dtype=torch.float32).view(1, 9, 1))  # (1, 1)
        return float(y[0, 0]) + w[-1]

    for t in (263, 290, 308):
        w = z[t - 9 : t]
        # 1e-5 in the model's units: it runs in float32, batched there and one window at a time here
        tol = 1e-5 * scaler.scale
        assert r.predictions[name][1][t - 263] == pytest.approx(scaler.inverse(step(w)), abs=tol)
        w = z[t - 13 : t - 4]  # the window ending 5 steps before t
        for _ in range(4):
            w = np.append(w[1:], step(w))  # slide: drop the oldest, append its own prediction
        assert r.predictions[name][5][t - 263] == pytest.approx(scaler.inverse(step(w)), abs=tol)


class GaussianDrift(torch.nn.Module):
    """A fake probabilistic forecaster on relative windows: next - last ~ N(mu, sigma^2), point forecast mu."""

    def __init__(self, mu: float, sigma: float):
        super().__init__()
        self.mu, self.sigma = mu, sigma

    def forward(self, x, targets=None):
        return torch.full((x.shape[0], 1), self.mu), None  # (B, 1)

    def distribution(self, x):
        B = x.shape[0]
        return MixtureParams(torch.zeros(B, 1), torch.full((B, 1, 1), self.mu), torch.full((B, 1, 1), self.sigma))


def test_band_edges_are_the_predictive_quantiles(monkeypatch):
    """An 80% band of a random walk with drift: z_t+h = z_t + h mu + sigma sqrt(h) eps, so its edges are
    z_t + h mu -+ 1.2816 sigma sqrt(h) (the 10% and 90% Gaussian quantiles), in original units."""
    mu, sigma = 0.1, 0.5
    fake = GaussianDrift(mu, sigma)
    monkeypatch.setattr(forecast, "train_forecaster", lambda name, *a, **k: (fake, {"params": 0}))
    r = run_forecast(
        ForecastSettings(models=("ar",), horizons=(1, 3), samples=20000, interval=0.8, budget_steps=1, seed=0)
    )
    scaler = build_sunspots(SunspotsConfig(tau=9)).info["scaler"]
    z = scaler.transform(r.series)
    for h in (1, 3):
        center = z[r.targets - h] + h * mu  # (N,) from the origin h steps before each target
        half = 1.2815516 * sigma * np.sqrt(h)
        lo, hi = r.band[h]
        tol = 0.06 * sigma * np.sqrt(h) * scaler.scale  # ~3.5 standard errors of a quantile of 20000 draws
        np.testing.assert_allclose(lo, scaler.inverse(center - half), rtol=0, atol=tol)
        np.testing.assert_allclose(hi, scaler.inverse(center + half), rtol=0, atol=tol)
        assert np.mean(hi - lo) == pytest.approx(2 * half * scaler.scale, rel=0.01)
        np.testing.assert_allclose(r.predictions["lstm_mdn"][h], scaler.inverse(center), rtol=1e-6)  # mu in float32


def test_iterate_feeds_predictions_back():
    seen = []

    def predict(w):
        seen.append(w.copy())
        return w.sum(1)  # x_hat = sum of the window

    out = iterate(predict, np.array([[1.0, 2.0]]), 3)
    np.testing.assert_allclose(out, [[3.0, 5.0, 8.0]])  # Fibonacci: each prediction joins the window
    np.testing.assert_allclose(seen[2], [[3.0, 5.0]])


def test_cli_forecast_writes_json_table_and_figure(tmp_path, capsys):
    argv = [
        "forecast",
        "--data",
        "sine",
        "--models",
        "ar,lstm",
        "--order",
        "4",
        "--horizons",
        "1,3",
        "--budget-steps",
        "5",
        "--out",
        str(tmp_path),
        "--quiet",
        "--data.length=300",
    ]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "forecast.json").read_text())
    assert list(metrics) == ["naive", "ar", "lstm", "lstm_mdn"]
    assert all(list(per) == ["1", "3"] and set(per["1"]) == {"rmse", "mae"} for per in metrics.values())
    info = json.loads((tmp_path / "forecast_info.json").read_text())
    assert info["split"] == {"train": 210, "val": 45, "test": 45, "length": 300}
    assert info["fits"]["lstm"]["steps"] == 5 and info["fits"]["lstm"]["kept"] == "best_val"
    assert (tmp_path / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "| model | h=1 RMSE | h=1 MAE | h=3 RMSE | h=3 MAE |" in out
    assert "| naive | " in out and "lstm_mdn 80% interval covers the test truth" in out


def test_cli_forecast_without_validation_keeps_the_final_weights(tmp_path, capsys):
    argv = [
        "forecast",
        "--data",
        "sine",
        "--models",
        "lstm",
        "--order",
        "4",
        "--horizons",
        "1",
        "--budget-steps",
        "3",
        "--interval-model",
        "none",
        "--out",
        str(tmp_path),
        "--data.length=200",
        "--data.val_fraction=0.0",
    ]
    assert main(argv) == 0
    info = json.loads((tmp_path / "forecast_info.json").read_text())
    assert info["split"] == {"train": 170, "val": 0, "test": 30, "length": 200}
    assert info["fits"]["lstm"]["kept"] == "final" and info["fits"]["lstm"]["best_val_loss"] is None
    assert info["fits"]["lstm"]["best_step"] == info["fits"]["lstm"]["steps"] == 3
    err = capsys.readouterr().err
    assert "lstm: " in err and "no validation part (data.val_fraction = 0): kept the final weights" in err


def test_forecast_on_co2_follows_the_level():
    r = run_forecast(
        ForecastSettings(data="co2", models=("ar", "lstm"), order=8, horizons=(1, 2), interval_model="", **TINY)
    )
    assert list(r.metrics) == ["naive", "ar", "lstm"] and r.band == {}
    # ppmv: the test part is above every training value; relative windows keep forecasts near it.
    assert r.metrics["ar"][1]["rmse"] < r.metrics["naive"][1]["rmse"] < 1.0
    assert r.metrics["lstm"][2]["rmse"] < 3.0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(models=("ar", "arima")), "unknown model 'arima' in --models; valid: ar, mlp_ar"),
        (dict(data="digits"), "--data must be a series dataset (sunspots, co2, sine, series_csv), got 'digits'"),
        (dict(horizons=(0, 5)), "--horizons must be integers >= 1, got 0,5"),
        (dict(horizons=(1, 1)), "--horizons lists a horizon twice: 1,1"),
        (dict(lr=-1.0), "--lr must be a number > 0, got -1.0"),
        (
            dict(models=("ar",), order=120, horizons=(1,)),
            "AR(120) needs at least 2 * order + 1 = 241 training values to fit, and the training part holds 217; "
            "lower --order",
        ),
        (dict(interval_model="lstm"), "--interval-model 'lstm' has no predictive distribution"),
        (dict(data_overrides=(("tau", 3),)), "set the window with --order (tau)"),
        (
            dict(order=200, horizons=(70,)),
            "the largest horizon (70) plus --order (200) reaches before the series starts",
        ),
    ],
)
def test_settings_errors(kwargs, message):
    with pytest.raises(ConfigError) as err:
        run_forecast(ForecastSettings(**{**TINY, **kwargs}))
    assert message in str(err.value)


def test_cli_forecast_usage_errors(capsys, tmp_path):
    assert main(["forecast", "--horizons", "1,x", "--out", str(tmp_path)]) == 2
    assert "--horizons expects comma-separated integers, e.g. 1,5,10; got '1,x'" in capsys.readouterr().err
    assert main(["forecast", "--model.hidden_size=3", "--out", str(tmp_path)]) == 2
    assert "unrecognised argument '--model.hidden_size=3'" in capsys.readouterr().err


def test_sunspots_preset_trains_and_evaluates_through_the_cli(tmp_path, configs_dir, capsys):
    argv = [
        "train",
        str(configs_dir / "sunspots_lstm.toml"),
        "--train.max_steps=10",
        "--train.eval_every=5",
        "--train.tensorboard=false",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert main(argv) == 0
    run = next(tmp_path.iterdir())
    assert run.name.startswith("sunspots-rnn_forecaster-")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "regression" and summary["steps"] == 10
    assert "best_val/loss_normalised" in summary and summary["test/loss_normalised"] > 0
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test/loss_normalised"] == pytest.approx(summary["test/loss_normalised"], abs=1e-5)


@pytest.mark.parametrize("model", ["mlp_ar", "transformer_forecaster"])
def test_window_length_mismatch_is_a_config_error(model, tmp_path, capsys):
    preset = tmp_path / "p.toml"
    preset.write_text(
        f'[model]\nname = "{model}"\ntau = 5\n\n[data]\nname = "sunspots"\ntau = 9\n\n[train]\nmax_steps = 1\n'
    )
    assert main(["train", str(preset), "--out", str(tmp_path / "runs")]) == 2
    assert "model.tau = 5 but data 'sunspots' gives 9; set --model.tau=9" in capsys.readouterr().err


def ar_on_csv(path, log=lambda text: None):
    """AR(3) forecasts at horizons 1 and 2 of the series in the CSV file ``path``, no interval."""
    settings = ForecastSettings(
        data="series_csv",
        models=("ar",),
        order=3,
        horizons=(1, 2),
        interval_model="",
        data_overrides=(("path", str(path)),),
        **TINY,
    )
    return run_forecast(settings, log=log)


def test_large_valued_series_keeps_its_digits(tmp_path):
    """A series near 1e8 (float32 spacing 8 there): truth, naive and AR metrics computed in float64."""
    rng = np.random.default_rng(0)
    values = 1e8 + np.cumsum(rng.normal(0.0, 3.0, size=120)) + 0.25  # steps of a few units
    path = tmp_path / "big.csv"
    path.write_text("t,value\n" + "\n".join(f"{i},{float(v)!r}" for i, v in enumerate(values)) + "\n")
    r = ar_on_csv(path)
    assert r.series.dtype == np.float64 and np.array_equal(r.series, values)
    n_train, test_start = r.split_index
    for h in (1, 2):
        err = values[test_start:] - values[test_start - h : len(values) - h]
        assert r.metrics["naive"][h]["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-9)
        assert r.metrics["naive"][h]["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-9)
    scaler = build_series_csv(CsvSeriesConfig(path=str(path), tau=3)).info["scaler"]
    z = scaler.transform(values)
    ar = ARModel(3).fit(z[:n_train])
    t = len(values) - 1
    expected = scaler.inverse(ar.forecast(z[:t], 1)[-1])
    assert r.predictions["ar"][1][-1] == pytest.approx(expected, abs=1e-6)  # ~1e8: float32 would be off by units


def test_missing_test_values_are_filled_for_the_inputs_but_not_scored(tmp_path):
    """A value missing in the test part is interpolated so the windows can read it, but it is no truth:
    the scores compare forecasts with the observed values only, and the info counts both."""
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(0.0, 1.0, size=120))
    gaps = [103, 104, 110, 117]  # in the test part (the last 20%)
    path = tmp_path / "gaps.csv"
    path.write_text("t,value\n" + "\n".join(f"{i},{'' if i in gaps else repr(float(v))}" for i, v in enumerate(values)))
    logged = []
    r = ar_on_csv(path, log=logged.append)
    n_train, test_start = r.split_index
    assert test_start <= min(gaps)
    observed = np.array([t not in gaps for t in r.targets])
    assert r.info["test_targets"] == int(observed.sum()) == len(r.targets) - 4 and r.info["test_targets_filled"] == 4
    assert (
        f"gaps.csv: 4 of the {len(r.targets)} test values were missing: scored on the {observed.sum()} observed ones"
        in ("\n".join(logged))
    )
    truth = r.series[r.targets]
    for name in ("naive", "ar"):
        for h in (1, 2):
            err = r.predictions[name][h][observed] - truth[observed]
            assert r.metrics[name][h]["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
            assert r.metrics[name][h]["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
            everything = r.predictions[name][h] - truth
            assert r.metrics[name][h]["mae"] != pytest.approx(np.mean(np.abs(everything)), rel=1e-6)

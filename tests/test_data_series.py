"""Time series: embedded CSVs, missing values, AR windows, chronological splits, train-only scaling."""

import math
import re

import numpy as np
import pytest
import torch

from seqlab.data import CO2Config, CsvSeriesConfig, DataError, SineConfig, SunspotsConfig, ar_windows
from seqlab.data.series import build_co2, build_series_csv, build_sine, build_sunspots, load_co2


def test_sunspots_embedded_series():
    splits = build_sunspots(SunspotsConfig(tau=5))
    info = splits.info
    s = info["series"]
    assert len(s) == 309 and s[:4].tolist() == [5.0, 11.0, 16.0, 23.0]
    assert info["time"][0] == "1700" and info["time"][-1] == "2008" and info["filled"] == 0
    assert len(splits.train) + len(splits.val) + len(splits.test) == 309 - 5
    assert splits.train.x.shape[1:] == (5, 1) and splits.train.y.shape[1:] == (1,)


def test_co2_missing_weeks_are_interpolated_and_counted():
    values, time, filled = load_co2()
    assert len(values) == 2284 and filled == 59 and not np.isnan(values).any()
    assert time[0] == "1958-03-29" and time[-1] == "2001-12-29"
    # 1958-05-10 (line 8) is missing between 1958-05-03 (316.9) and 1958-05-17 (317.5).
    assert time[6] == "1958-05-10" and values[5] == 316.9 and values[7] == 317.5
    assert values[6] == pytest.approx((316.9 + 317.5) / 2)
    info = build_co2(CO2Config()).info
    assert info["filled"] == 59
    assert info["messages"] == ["embedded:co2.csv: filled 59 missing weeks (of 2,284) by linear interpolation"]
    with pytest.raises(
        DataError, match=re.escape("embedded:co2.csv:8: missing or NaN value (59 of 2,284 values are missing)")
    ):
        build_co2(CO2Config(missing="error"))


def test_ar_windows():
    s = torch.arange(10.0)
    x, y, t = ar_windows(s, 3, horizon=2)
    assert x.shape == (6, 3, 1) and y.shape == (6, 1)
    assert x[0, :, 0].tolist() == [0.0, 1.0, 2.0] and y[0].item() == 4.0 and t.tolist() == list(range(4, 10))
    assert torch.equal(y[:, 0], x[:, -1, 0] + 2)


def test_split_is_chronological_and_scaler_fitted_on_train_only():
    cfg = SineConfig(length=200, tau=4, val_fraction=0.2, test_fraction=0.1, noise=0.0)
    splits = build_sine(cfg)
    info = splits.info
    n_train, n_val_end = info["split_index"]
    assert (n_train, n_val_end) == (140, 180)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (140 - 4, 40, 20)
    raw = info["series"]
    scaler = info["scaler"]
    assert scaler.shift == pytest.approx(float(raw[:140].double().mean()), abs=1e-6)
    assert scaler.scale == pytest.approx(float(raw[:140].double().std(unbiased=False)), abs=1e-6)
    # targets of each split, inverted, are the series at consecutive times in order
    assert raw.dtype == torch.float64  # the series as read; the windows are float32
    ys = [info["inverse"](ds.y[:, 0].double()) for ds in (splits.train, splits.val, splits.test)]
    assert torch.allclose(torch.cat(ys), raw[4:], atol=1e-5)
    assert torch.allclose(ys[1], raw[140:180], atol=1e-5)
    # the first val window reads the last training values (the past), not val ones
    assert torch.allclose(info["inverse"](splits.val.x[0, :, 0].double()), raw[136:140], atol=1e-5)
    assert float(scaler.transform(raw[:140].double()).mean()) == pytest.approx(0.0, abs=1e-6)
    assert abs(float(scaler.transform(raw[140:].double()).mean())) > 0.1  # val/test not used in the fit
    minmax = build_sine(
        SineConfig(length=200, tau=4, val_fraction=0.2, test_fraction=0.1, noise=0.0, normalize="minmax")
    )
    z = minmax.info["scaler"].transform(raw[:140])
    assert float(z.min()) == pytest.approx(0.0, abs=1e-6) and float(z.max()) == pytest.approx(1.0, abs=1e-6)


def test_persistence_baseline_is_in_original_units():
    splits = build_sine(SineConfig(length=300, tau=3, seed=2))
    raw = splits.info["series"]
    n_train, n_val_end = splits.info["split_index"]
    expected = float(((raw[n_train:n_val_end] - raw[n_train - 1 : n_val_end - 1]) ** 2).mean())
    assert splits.info["baseline"]["persistence_mse_val"] == pytest.approx(expected, rel=1e-5)


def test_sine_is_deterministic_and_noisy():
    a = build_sine(SineConfig(seed=1)).info["series"]
    b = build_sine(SineConfig(seed=1)).info["series"]
    c = build_sine(SineConfig(seed=2)).info["series"]
    clean = torch.sin(0.01 * torch.arange(1, 1001, dtype=torch.float64))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float((a.double() - clean).std()) == pytest.approx(0.2, abs=0.02)


def write_csv(tmp_path, rows, name="s.csv"):
    path = tmp_path / name
    path.write_text("t,value\n" + "\n".join(rows) + "\n")
    return path


def test_csv_nan_and_empty_cells_are_filled_and_counted(tmp_path):
    rows = [f"{i},{v}" for i, v in enumerate(["1", "NaN", "3", "", "5"] + [str(i) for i in range(6, 40)])]
    path = write_csv(tmp_path, rows)
    splits = build_series_csv(CsvSeriesConfig(path=str(path), tau=3))
    assert splits.info["filled"] == 2 and splits.info["series"][:5].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert splits.info["messages"] == [f"{path}: filled 2 missing values (of 39) by linear interpolation"]
    with pytest.raises(DataError, match=re.escape(f"{path}:3: missing or NaN value (2 of 39 values are missing)")):
        build_series_csv(CsvSeriesConfig(path=str(path), tau=3, missing="error"))


def test_filled_values_are_inputs_and_training_targets_but_never_scored(tmp_path):
    """A gap in the validation or test part is filled for the windows that read it, but no validation or test
    window has a filled target (its loss would score the interpolation); training windows keep theirs."""
    gaps = {5, 30, 33, 37}  # one in train, one in val, two in test (39 values: 27 / 6 / 6 after tau = 3)
    rows = [f"{i},{'' if i in gaps else i * 0.5}" for i in range(39)]
    splits = build_series_csv(CsvSeriesConfig(path=str(write_csv(tmp_path, rows)), tau=3))
    inv, n_train, test_start = splits.info["inverse"], *splits.info["split_index"]
    assert n_train <= 30 < test_start <= 33
    targets = {part: sorted(round(float(v) / 0.5) for v in inv(ds.y[:, 0].double())) for part, ds in
               (("train", splits.train), ("val", splits.val), ("test", splits.test))}  # fmt: skip
    assert 5 in targets["train"]  # interpolated (2.5), still a training target
    assert targets["val"] == [t for t in range(n_train, test_start) if t not in gaps]
    assert targets["test"] == [t for t in range(test_start, 39) if t not in gaps]


def test_csv_bad_cells_and_rows_name_the_line(tmp_path):
    path = write_csv(tmp_path, ["0,1.5", "1,2.5", "2,abc"])
    with pytest.raises(DataError, match=re.escape(f"{path}:4: expected a number in column 'value', found 'abc'")):
        build_series_csv(CsvSeriesConfig(path=str(path)))
    path = write_csv(tmp_path, ["0,1.5", "1,2.5,7"])
    with pytest.raises(DataError, match=re.escape(f"{path}:3: expected 2 fields (t,value), found 3")):
        build_series_csv(CsvSeriesConfig(path=str(path)))
    path = write_csv(tmp_path, ["0,1", "1,2"])
    with pytest.raises(DataError, match=re.escape(f"{path}: no column 'co2'; found columns t, value")):
        build_series_csv(CsvSeriesConfig(path=str(path), column="co2"))
    with pytest.raises(
        DataError, match="a series of 2 values leaves 2 for training, fewer than tau \\+ horizon \\+ 1 = 12"
    ):
        build_series_csv(CsvSeriesConfig(path=str(path)))


def test_windows_cover_every_target_once():
    splits = build_sunspots(SunspotsConfig(tau=10, horizon=3))
    raw = splits.info["series"]
    inv = splits.info["inverse"]
    ys = torch.cat([inv(ds.y[:, 0].double()) for ds in (splits.train, splits.val, splits.test)])
    assert torch.allclose(ys, raw[12:], atol=1e-3)
    xs = inv(splits.train.x[:, :, 0].double())
    assert torch.allclose(xs[:, -1], raw[9 : 9 + len(xs)], atol=1e-3)
    assert math.isclose(splits.info["scaler"].inverse(splits.info["scaler"].transform(42.0)), 42.0)

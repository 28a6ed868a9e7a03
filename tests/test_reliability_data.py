"""Issue 12: no silent wrong numbers, runs that travel, a resume that trains nothing leaves the run alone.

Series runs report errors in the series' units next to the persistence baseline; every data file
a run read is fingerprinted, so `eval` warns and `--resume` refuses when it changed; data paths are
stored absolute and may be given anew; filled values are counted; a header-less CSV is detected.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from seqlab.cli import main
from seqlab.config import from_dict
from seqlab.data import DATASETS, CsvSeriesConfig, DataError, SunspotsConfig, build_splits

TINY_SERIES = ["--train.max_steps=6", "--train.eval_every=3", "--train.tensorboard=false", "--quiet"]
TINY_LM = [
    "--model.hidden_size=8",
    "--model.embedding_size=4",
    "--data.seq_len=8",
    "--train.batch_size=4",
    "--train.tbptt_steps=8",
    "--train.max_steps=4",
    "--train.epochs=0",
    "--train.eval_every=2",
    "--train.tensorboard=false",
    "--quiet",
]
TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(40))


def _only_run(out: Path) -> Path:
    (run,) = out.iterdir()
    return run


def _train_lm(configs_dir, text_path: Path, out: Path, *extra) -> Path:
    assert (
        main(
            [
                "train",
                str(configs_dir / "charlm_lstm.toml"),
                f"--data.path={text_path}",
                *TINY_LM,
                "--out",
                str(out),
                *extra,
            ]
        )
        == 0
    )
    return _only_run(out)


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# -- 1. series runs: original units next to the baseline --------------------------------------


def test_series_summary_reports_original_units_next_to_the_baseline(tmp_path, configs_dir, capsys):
    assert main(["train", str(configs_dir / "sunspots_lstm.toml"), *TINY_SERIES, "--out", str(tmp_path)]) == 0
    run = _only_run(tmp_path)
    s = json.loads((run / "summary.json").read_text())
    assert "test/loss" not in s and "best_val/loss" not in s  # the normalised loss only under its own name
    scale = build_splits(SunspotsConfig(tau=9)).info["scaler"].scale
    # A point forecaster's MSE is its normalised loss times the scale squared (the scaler is affine).
    assert s["test/mse_original_units"] == pytest.approx(s["test/loss_normalised"] * scale**2, rel=1e-4)
    assert s["val/mse_original_units"] == pytest.approx(s["val/loss_normalised"] * scale**2, rel=1e-4)
    assert s["test/rmse_original_units"] == pytest.approx(s["test/mse_original_units"] ** 0.5)
    assert s["baseline/persistence_mse_test"] == pytest.approx(859.13, abs=0.01)
    assert s["units"] == "sunspot number" and "best_val/loss_normalised" in s
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test/mse_original_units"] == pytest.approx(s["test/mse_original_units"], rel=1e-5)
    assert evaluated["test/loss_normalised"] == pytest.approx(s["test/loss_normalised"], abs=1e-5)
    assert "test/loss" not in evaluated
    assert main(["runs", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert f"mse_original_units {s['test/mse_original_units']:.4f}" in table
    assert f"persistence_mse_test {s['baseline/persistence_mse_test']:.4f}" in table


# -- 5. filled values counted; a header-less CSV detected -------------------------------------


def test_filled_values_are_counted_in_the_run_output_and_summary(tmp_path, configs_dir, capsys):
    csv = tmp_path / "s.csv"
    values = [str(i % 7) if i not in (20, 33) else "" for i in range(80)]
    csv.write_text("t,v\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    assert (
        main(
            [
                "train",
                str(configs_dir / "sunspots_lstm.toml"),
                "--data.name=series_csv",
                f"--data.path={csv}",
                "--data.tau=3",
                *TINY_SERIES,
                "--out",
                str(tmp_path / "runs"),
            ]
        )
        == 0
    )
    s = json.loads((_only_run(tmp_path / "runs") / "summary.json").read_text())
    assert s["data/missing_values_filled"] == 2
    assert f"{csv}: filled 2 missing values (of 80) by linear interpolation" in capsys.readouterr().err


def test_forecast_reports_co2_filled_weeks(tmp_path, capsys):
    out = tmp_path / "fc"
    assert (
        main(
            [
                "forecast",
                "--data",
                "co2",
                "--models",
                "ar",
                "--interval-model",
                "none",
                "--horizons",
                "1",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "embedded:co2.csv: filled 59 missing weeks (of 2,284) by linear interpolation" in capsys.readouterr().out
    info = json.loads((out / "forecast_info.json").read_text())
    assert info["missing_values_filled"] == 59


def test_csv_without_header_is_detected_and_header_false_reads_every_value(tmp_path):
    csv = tmp_path / "noheader.csv"
    csv.write_text("".join(f"{i},{i * 1.5}\n" for i in range(40)))
    with pytest.raises(DataError) as err:
        build_splits(CsvSeriesConfig(path=str(csv), tau=3))
    message = str(err.value)
    assert message.startswith(f"{csv}:1: the first row ('0,0.0') is numbers, not a header")
    assert "add a header row" in message and "--data.header=false" in message
    splits = build_splits(CsvSeriesConfig(path=str(csv), tau=3, header=False))
    assert len(splits.info["series"]) == 40 and splits.info["series"][0].item() == 0.0


# -- 3, 4. fingerprints, absolute paths, a new place for the same data --------------------------


def test_eval_warns_and_resume_refuses_when_the_data_file_changed(tmp_path, configs_dir, capsys):
    text = tmp_path / "input.txt"
    text.write_text(TEXT)
    run = _train_lm(configs_dir, text, tmp_path / "runs")
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["data_files"]["data.path"]["sha256"] == __import__("hashlib").sha256(TEXT.encode()).hexdigest()
    assert json.loads((run / "summary.json").read_text())["data_files"] == ckpt["data_files"]
    capsys.readouterr()

    text.write_text(TEXT.replace("lazy", "yzzal"))  # the same characters, so the model still reads it
    assert main(["eval", str(run)]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.splitlines()  # one line
    assert warning.startswith(f"seqlab eval: warning: data file {text} is not the one the run was trained on: ")
    assert f"then {len(TEXT):,} bytes" in warning and f"now {len(TEXT) + 40:,} bytes" in warning
    assert "test/loss" in json.loads(captured.out)
    text.write_text(TEXT + "Z")  # a new character: the model cannot read this text at all
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith(f"seqlab eval: warning: data file {text} is not the one")
    # The run stores its vocabulary (issue 23): data that gives another one is refused, naming the first id
    # whose token differs, never read through shifted ids.
    n = len(set(TEXT))
    assert err[1].startswith(
        f"seqlab eval: error: the data gives another vocabulary than {run} was trained with "
        f"(vocab: {n} tokens, the data gives {n + 1}; id "
    )
    assert err[1].endswith("point --data.path (or --data.root) at the data the run was trained on")
    text.write_text(TEXT.replace("lazy", "yzzal"))

    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "--train.max_steps=8"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume {run}: data file {text} is not the one the run was trained on" in err
    assert len(err.strip().splitlines()) == 1
    assert _snapshot(run) == before


def test_runs_store_absolute_paths_and_accept_a_new_location_for_the_same_data(
    tmp_path, configs_dir, capsys, monkeypatch
):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "input.txt").write_text(TEXT)
    monkeypatch.chdir(tmp_path / "a")
    assert (
        main(
            [
                "train",
                str(configs_dir / "charlm_lstm.toml"),
                "--data.path=input.txt",
                *TINY_LM,
                "--out",
                str(tmp_path / "runs"),
            ]
        )
        == 0
    )
    run = _only_run(tmp_path / "runs")
    assert f'path = "{tmp_path / "a" / "input.txt"}"' in (run / "config.toml").read_text()
    summary = json.loads((run / "summary.json").read_text())

    monkeypatch.chdir(tmp_path)  # another folder: the stored path is absolute
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["test/loss"] == pytest.approx(summary["test/loss"], abs=1e-5)

    shutil.move(tmp_path / "a", tmp_path / "b")  # the data moves
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "if its data moved, give the new location with --data.path=..." in err
    assert main(["eval", str(run), f"--data.path={tmp_path / 'b' / 'input.txt'}"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # same content: no warning
    assert json.loads(captured.out)["test/loss"] == pytest.approx(summary["test/loss"], abs=1e-5)
    assert main(["eval", str(run), "--data.seq_len=4"]) == 2
    assert "only the data's location can be given for an existing run" in capsys.readouterr().err

    assert main(["train", "--resume", str(run), "--data.path=b/input.txt", "--train.max_steps=6"]) == 0
    err = capsys.readouterr().err
    assert "another model or data config" not in err
    assert "with its data in a new place (same content)" in err
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    assert f'path = "{tmp_path / "b" / "input.txt"}"' in (run / "config.toml").read_text()

    # A run saved before paths were resolved (as typed, no fingerprints) still resumes from its folder.
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["data_config"]["path"] = "input.txt"
    del ckpt["data_files"]
    torch.save(ckpt, run / "checkpoints" / "last.pt")
    monkeypatch.chdir(tmp_path / "b")
    assert main(["train", "--resume", str(run), "--train.max_steps=8"]) == 0
    assert "another model or data config" not in capsys.readouterr().err


# -- 6. a resume that would train nothing ----------------------------------------------------


@pytest.mark.parametrize("max_steps", [3, 6])
def test_resume_with_no_steps_left_refuses_and_leaves_the_run_as_it_was(tmp_path, configs_dir, capsys, max_steps):
    assert main(["train", str(configs_dir / "sunspots_lstm.toml"), *TINY_SERIES, "--out", str(tmp_path)]) == 0
    run = _only_run(tmp_path)
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), f"--train.max_steps={max_steps}"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"seqlab train: error: nothing to do: {run} has trained 6 steps and train.max_steps = "
        f"{max_steps} asks for no more; the run is left as it was; give a larger --train.max_steps "
        f"to train on\n"
    )
    assert _snapshot(run) == before  # config.toml, command.txt, checkpoints: byte for byte


# -- docs made true: the vocabulary size comes from the data ----------------------------------


def test_char_lm_vocabulary_size_comes_from_the_data(tmp_path, configs_dir, capsys):
    text = tmp_path / "input.txt"
    text.write_text(TEXT)
    run = _train_lm(configs_dir, text, tmp_path / "runs")
    vocab = len(set(TEXT))
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model_config"]["vocab_size"] == vocab
    assert f"vocab_size = {vocab}" in (run / "config.toml").read_text()
    assert (
        main(
            [
                "train",
                str(configs_dir / "charlm_lstm.toml"),
                f"--data.path={text}",
                "--model.vocab_size=58",
                *TINY_LM,
                "--out",
                str(tmp_path / "other"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"model.vocab_size = 58 but data 'char_lm' gives {vocab}; set --model.vocab_size={vocab}" in err


def test_mnist_validation_split_is_5001_as_documented():
    # docs/data.md and MnistConfig's comment: 1/12 of each class, rounded, is 5,001 of 60,000.
    labels = torch.arange(10).repeat_interleave(
        torch.tensor([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    )
    from seqlab.data import stratified_split

    val, train = stratified_split(labels, (1 / 12,), seed=0)
    assert (len(val), len(train)) == (5001, 54999)
    assert "5,001" in (Path(__file__).resolve().parent.parent / "docs" / "data.md").read_text()


def test_data_files_are_fingerprinted_by_every_file_dataset(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("t,v\n" + "".join(f"{i},{i % 5}\n" for i in range(40)))
    info = build_splits(from_dict(DATASETS["series_csv"].config, {"path": str(csv), "tau": 3}, "data")).info
    assert info["files"]["data.path"] == {
        "path": str(csv.resolve()),
        "size": csv.stat().st_size,
        "sha256": __import__("hashlib").sha256(csv.read_bytes()).hexdigest(),
    }
    assert build_splits(SunspotsConfig()).info["files"]["embedded"]["path"] == "embedded:sunspots.csv"
    assert os.path.isabs(info["files"]["data.path"]["path"])

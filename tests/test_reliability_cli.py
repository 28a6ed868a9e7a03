"""Issue 12, clearer messages: each a single line on stderr with exit status 2, naming what to fix."""

import warnings
from pathlib import Path

import pytest

from seqlab.cli import main

TINY_DIGITS = [
    "--train.max_steps=2",
    "--train.eval_every=1",
    "--model.hidden_size=8",
    "--train.tensorboard=false",
    "--quiet",
]


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err.strip()


def test_resume_of_a_run_that_died_before_its_first_checkpoint(tmp_path, capsys):
    run = tmp_path / "digits-rnn_classifier-20260101-000000"
    run.mkdir()
    (run / "config.toml").write_text('[model]\nname = "rnn_classifier"\n')  # written before training starts
    assert main(["train", "--resume", str(run)]) == 2
    assert _error(capsys) == (
        f"seqlab train: error: {run} has no checkpoint yet (the run stopped before writing "
        f"its first one); nothing to resume"
    )
    assert main(["eval", str(run)]) == 2
    assert _error(capsys).endswith("nothing to evaluate")


def test_unknown_checkpoint_lists_the_ones_there(tmp_path, configs_dir, capsys):
    assert main(["train", str(configs_dir / "digits_lstm.toml"), *TINY_DIGITS, "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    capsys.readouterr()
    assert main(["eval", str(run), "--checkpoint", "nope.pt"]) == 2
    assert _error(capsys) == (
        f"seqlab eval: error: {run} has no checkpoints/nope.pt; checkpoints there: best.pt, last.pt"
    )


def test_out_that_cannot_be_created_is_a_usage_error(tmp_path, configs_dir, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["train", str(configs_dir / "digits_lstm.toml"), *TINY_DIGITS, "--out", str(blocker / "runs")]) == 2
    err = _error(capsys)
    assert err.startswith(f"seqlab train: error: cannot create the run directory {blocker / 'runs'}/")
    assert err.endswith(f"under --out {blocker / 'runs'}: Not a directory")
    assert main(["forecast", "--models", "ar", "--interval-model", "none", "--out", str(blocker)]) == 2
    assert _error(capsys) == f"seqlab forecast: error: cannot create the output folder --out {blocker}: File exists"


def test_run_name_may_not_escape_out(tmp_path, configs_dir, capsys):
    out = tmp_path / "runs"
    preset = str(configs_dir / "digits_lstm.toml")
    assert main(["train", preset, *TINY_DIGITS, "--out", str(out), "--name", "../x"]) == 2
    assert "--name must be a plain folder name (no '/', not '.' or '..')" in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, inside --out or beside it


def test_series_too_short_names_the_file_and_the_commands_option(tmp_path, configs_dir, capsys):
    csv = tmp_path / "short.csv"
    csv.write_text("t,v\n" + "".join(f"{i},{i % 3}\n" for i in range(12)))
    assert (
        main(
            [
                "forecast",
                "--data",
                "series_csv",
                f"--data.path={csv}",
                "--models",
                "ar",
                "--interval-model",
                "none",
                "--out",
                str(tmp_path / "fc"),
            ]
        )
        == 2
    )
    err = _error(capsys)
    assert err.startswith(
        f"seqlab forecast: error: {csv}: a series of 12 values leaves 8 for training, fewer than "
        f"tau + horizon + 1 = 11 (tau = 9)"
    )
    assert "lower --order" in err and "--data.tau" not in err
    assert (
        main(
            [
                "train",
                str(configs_dir / "sunspots_lstm.toml"),
                "--data.name=series_csv",
                f"--data.path={csv}",
                "--out",
                str(tmp_path / "runs"),
                "--quiet",
            ]
        )
        == 2
    )
    err = _error(capsys)
    assert err.startswith(f"seqlab train: error: {csv}: a series of 12 values") and "lower --data.tau" in err


def test_data_info_without_a_name_lists_the_datasets(capsys):
    assert main(["data", "info"]) == 2
    assert _error(capsys).startswith(
        "seqlab data: error: give a dataset name: seqlab data info NAME, one of adding, char_lm, co2,"
    )


@pytest.mark.parametrize("name", ["char_lm", "series_csv", "pairs"])
def test_data_path_that_is_a_folder_says_so(tmp_path, capsys, name):
    assert main(["data", "info", name, f"--data.path={tmp_path}"]) == 2
    assert f"{tmp_path} is a folder, expected a " in _error(capsys)


def test_pairs_skipped_lines_are_reported_once_without_a_python_warning(tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("Go.\tVa !\nHi.\tSalut !\nbad line\nRun!\tCours !\nWow!\tÇa alors !\nFire!\tAu feu !\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            main(
                ["data", "info", "pairs", f"--data.path={pairs}", "--data.val_fraction=0.2", "--data.test_fraction=0.2"]
            )
            == 0
        )
    assert caught == []
    out = capsys.readouterr().out
    assert out.count("skipped 1 of 6 lines: fewer than 2 fields") == 1


def test_bench_help_lists_the_benchmarks(capsys):
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    bench = Path(__file__).resolve().parent.parent / "src" / "seqlab" / "bench"
    names = sorted(p.stem for p in bench.glob("*.py") if "\ndef main(" in p.read_text())
    assert {"attention", "recurrent", "gpt"} <= set(names)
    for name in names:
        assert f"\n  {name} " in out
    assert "\n  timing " not in out  # the benchmarks' shared timing helper is no benchmark
    assert main(["bench", "timing"]) == 2
    assert "unknown benchmark 'timing'; available: attention, generate, gpt, recurrent" in capsys.readouterr().err


def test_commands_without_overrides_say_so(tmp_path, capsys):
    assert main(["runs", str(tmp_path), "--data.path=x"]) == 2
    assert _error(capsys) == (
        "seqlab runs: error: unrecognised argument '--data.path=x'; this command takes no --section.key=value overrides"
    )

"""Runs that survive their surroundings: a closed output pipe, a hang-up, Ctrl-C in forecast, damaged summaries.

Each process test starts ``python -m seqlab`` (a few seconds of imports each), hence ``slow``.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
import torch

from seqlab.cli import main

TRAIN = ["--train.tensorboard=false", "--model.hidden_size=16"]


def _seqlab(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "seqlab", *args], text=True, env=env, **kwargs)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    """stdout, stderr of ``proc`` once it has ended; a test that waits longer fails with what it said."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"seqlab did not finish within {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return out or "", err or ""


def _wait_for_a_logged_step(out_dir, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        metrics = list(out_dir.glob("*/metrics.jsonl"))
        if metrics and metrics[0].stat().st_size > 0:
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"training logged no step within {timeout} s: {_finish(proc)}")


@pytest.mark.slow
@pytest.mark.parametrize("closed", ["stdout", "stdout_and_stderr"])
def test_training_outlives_a_closed_output_pipe(tmp_path, configs_dir, closed):
    """`seqlab train ... | head -2` (stdout) and `... 2>&1 | head -2` (both): the run still ends complete."""
    out = tmp_path / "runs"
    both = closed == "stdout_and_stderr"
    proc = _seqlab(
        "train",
        str(configs_dir / "digits_lstm.toml"),
        *TRAIN,
        "--train.max_steps=300",
        "--train.log_every=5",
        "--out",
        str(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if both else subprocess.DEVNULL,
    )
    if both:  # the progress lines come through the pipe: read two, as head -2 does, then go away
        lines = [proc.stdout.readline() for _ in range(2)]
        assert all(line.startswith("step ") for line in lines), lines
    proc.stdout.close()
    try:
        rc = proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("seqlab train with a closed stdout did not finish within 180 s")
    assert rc == 0
    (run,) = out.iterdir()
    assert json.loads((run / "summary.json").read_text())["steps"] == 300
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 300


@pytest.mark.slow
def test_sighup_saves_a_checkpoint_and_exits_129(tmp_path, configs_dir):
    """A closed terminal or ssh session (SIGHUP) stops training as SIGTERM does."""
    out = tmp_path / "runs"
    proc = _seqlab(
        "train",
        str(configs_dir / "digits_lstm.toml"),
        *TRAIN,
        "--train.max_steps=1000000",
        "--train.eval_every=0",
        "--train.epochs=1",
        "--out",
        str(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for_a_logged_step(out, proc)
    proc.send_signal(signal.SIGHUP)
    _, stderr = _finish(proc)
    assert proc.returncode == 129, stderr
    (run,) = out.iterdir()
    assert "seqlab train: interrupted by SIGHUP; checkpoint saved at step" in stderr
    assert f"resume with: seqlab train --resume {run}" in stderr and "Traceback" not in stderr
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] >= 1 and ckpt["position"]["batch"] >= 1


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal made the controlling terminal")
def test_a_closed_terminal_stops_training_with_a_checkpoint(tmp_path, configs_dir):
    """The terminal itself goes away (as when an ssh session drops): SIGHUP, then EIO on every write to it."""
    import fcntl
    import pty
    import termios

    out = tmp_path / "runs"
    master, slave = pty.openpty()

    def on_the_terminal():  # a session of its own whose controlling terminal is the pty, as a login shell's
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = _seqlab(
        "train",
        str(configs_dir / "digits_lstm.toml"),
        *TRAIN,
        "--train.max_steps=1000000",
        "--train.eval_every=0",
        "--train.epochs=1",
        "--out",
        str(out),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=on_the_terminal,
    )
    os.close(slave)
    try:
        shown = b""
        deadline = time.time() + 120
        while b"val/loss" not in shown and time.time() < deadline and proc.poll() is None:
            if select.select([master], [], [], 0.5)[0]:  # the first evaluation's line: a checkpoint exists
                shown += os.read(master, 4096)
    finally:
        os.close(master)  # hang up
    _finish(proc)
    assert proc.returncode == 129, shown.decode(errors="replace")[-2000:]
    (run,) = out.iterdir()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] >= 1


@pytest.mark.slow
def test_ctrl_c_in_forecast_keeps_the_finished_models(tmp_path):
    """Ctrl-C while the LSTM trains: exit 130, one line, and forecast.json with naive and the finished AR."""
    out = tmp_path / "fc"
    proc = _seqlab(
        "forecast",
        "--data",
        "sine",
        "--models",
        "ar,lstm",
        "--interval-model",
        "none",
        "--budget-steps",
        "1000000",
        "--out",
        str(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stderr.readline()  # "ar: 10 parameters, fitted in ..." once AR is done; then the LSTM trains
    assert first.startswith("ar: "), first + _finish(proc)[1]
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = _finish(proc)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == [
        f"seqlab forecast: interrupted by SIGINT while fitting lstm; wrote naive and the finished models (ar) to "
        f"{out / 'forecast.json'}"
    ]
    metrics = json.loads((out / "forecast.json").read_text())
    assert list(metrics) == ["naive", "ar"]
    assert all(metrics["ar"][h]["rmse"] > 0 for h in ("1", "5", "10"))
    info = json.loads((out / "forecast_info.json").read_text())
    assert info["interrupted"] == {"signal": "SIGINT", "while_fitting": "lstm", "finished": ["ar"]}
    assert list(info["fits"]) == ["ar"]


def _run_dir(root, name, summary=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text("")
    if summary is not None:
        (run / "summary.json").write_text(summary)
    return run


def test_runs_lists_runs_with_damaged_summaries_with_a_warning_each(tmp_path, capsys):
    good = {
        "task": "classification",
        "model": "rnn_classifier",
        "params": 1834,
        "steps": 30,
        "seconds": 1.5,
        "test/loss": 1.25,
        "test/accuracy": 0.5,
        "best_val/accuracy": 0.6,
    }
    _run_dir(tmp_path, "a-good", json.dumps(good))
    damaged = {
        "b-cut": '{"task": "classification", "par',
        "c-list": "[]",
        "d-null": "null",
        "e-text": '"done"',
        "f-wrong": '{"params": "many"}',
    }
    for name, text in damaged.items():
        _run_dir(tmp_path, name, text)
    unfinished = _run_dir(tmp_path, "g-killed")
    (unfinished / "config.toml").write_text('[model]\nname = "gpt"\n')  # written before the first step
    (unfinished / "metrics.jsonl").write_text('{"step": 7, "train/loss": 2.0}\n{"step": 8, "tra')  # killed mid-line

    assert main(["runs", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["name", "task", "model"]
    assert rows[1].split()[:4] == ["a-good", "classification", "rnn_classifier", "1,834"]
    assert "accuracy 0.6000" in rows[1] and "accuracy 0.5000" in rows[1]
    # Every damaged run is listed (issue 23: never dropped), with what could be read, and said once on stderr.
    for row, name in zip(rows[2:6], ["b-cut", "c-list", "d-null", "e-text"]):
        assert row.split()[:2] == [name, "-"] and "(summary damaged)" in row, row
    assert rows[6].split()[:5] == ["f-wrong", "-", "-", "-", "-"]
    assert rows[7].split()[:3] == ["g-killed", "-", "gpt"] and "7 (unfinished)" in rows[7]  # the model from config
    assert len(rows) == 8
    warnings = err.strip().splitlines()
    assert len(warnings) == len(damaged)
    for line, name in zip(warnings, sorted(damaged)):
        assert line.startswith(f"seqlab runs: warning: {tmp_path / name / 'summary.json'}"), line
    assert "is not valid JSON" in warnings[0] and warnings[0].endswith("the run is listed without it")
    assert warnings[1].endswith("holds list, not a JSON object; the run is listed without it")
    assert warnings[2].endswith("holds null, not a JSON object; the run is listed without it")
    assert warnings[3].endswith("holds str, not a JSON object; the run is listed without it")
    assert warnings[4].endswith("params = 'many' is not of the expected type; shown as -")

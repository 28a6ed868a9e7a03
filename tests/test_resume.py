"""Never lose a run: exact resume after SIGKILL, clean stop on SIGTERM, refusal of a foreign checkpoint."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from seqlab.cli import main

# Two layers with dropout (RNG in the loop), 10 batches per epoch, so step 13 is mid-epoch 2.
OVERRIDES = [
    "--train.max_steps=30",
    "--train.batch_size=128",
    "--train.checkpoint_every=13",
    "--train.eval_every=10",
    "--model.num_layers=2",
    "--model.dropout=0.3",
    "--model.hidden_size=32",
    "--train.tensorboard=false",
]

KILLER = textwrap.dedent("""
    import os, signal, sys
    from seqlab.train.config import load_experiment
    from seqlab.runs import train_experiment

    config, out, kill_at, *overrides = sys.argv[1:]

    def die(trainer):
        if trainer.step == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind

    train_experiment(load_experiment(config, overrides), out=out, run_name="killed", progress=False,
                     callbacks={"on_step_end": [die]})
""")


def _weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, configs_dir, capsys):
    config = str(configs_dir / "digits_lstm.toml")
    assert main(["train", config, *OVERRIDES, "--out", str(tmp_path / "straight"), "--quiet"]) == 0
    (straight,) = (tmp_path / "straight").iterdir()

    proc = subprocess.run(
        [sys.executable, "-c", KILLER, config, str(tmp_path / "k"), "13", *OVERRIDES], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (killed,) = (tmp_path / "k").iterdir()
    assert torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["step"] == 13
    assert not (killed / "summary.json").exists()

    capsys.readouterr()
    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    assert f"run directory: {killed}" in capsys.readouterr().out
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    s_a = json.loads((straight / "summary.json").read_text())
    s_b = json.loads((killed / "summary.json").read_text())
    assert s_b["steps"] == 30
    assert s_b["test/accuracy"] == pytest.approx(s_a["test/accuracy"], abs=1e-6)
    assert len((killed / "command.txt").read_text().splitlines()) == 2  # the first run's line, then the resume's


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_and_says_how_to_resume(tmp_path, configs_dir, signum):
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seqlab",
            "train",
            str(configs_dir / "digits_lstm.toml"),
            "--train.max_steps=1000000",
            "--train.eval_every=0",
            "--train.epochs=1",
            "--train.tensorboard=false",
            "--model.hidden_size=16",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until training has logged a step
        metrics = list(out.glob("*/metrics.jsonl"))
        if metrics and metrics[0].stat().st_size > 0:
            break
        time.sleep(0.1)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr
    (run,) = out.iterdir()
    assert (
        f"interrupted by {signal.Signals(signum).name}" in stderr
        and f"resume with: seqlab train --resume {run}" in stderr
    )
    assert "Traceback" not in stderr
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] >= 10

    # It resumes from there (a shorter budget, so it ends now).
    assert main(["train", "--resume", str(run), f"--train.max_steps={ckpt['step'] + 3}", "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == ckpt["step"] + 3


def test_resume_refuses_other_model_config(tmp_path, configs_dir, capsys):
    config = str(configs_dir / "digits_lstm.toml")
    assert (
        main(
            [
                "train",
                config,
                "--train.max_steps=2",
                "--model.hidden_size=16",
                "--out",
                str(tmp_path),
                "--quiet",
                "--train.tensorboard=false",
            ]
        )
        == 0
    )
    (run,) = tmp_path.iterdir()
    before = (run / "checkpoints" / "last.pt").read_bytes()
    assert main(["train", config, "--resume", str(run), "--model.hidden_size=32"]) == 2
    err = capsys.readouterr().err
    assert "trained with another model or data config" in err
    assert "model.hidden_size: checkpoint 16, now 32" in err
    assert (run / "checkpoints" / "last.pt").read_bytes() == before  # nothing lost
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_resume_refuses_code_carrying_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"model": Evil()}, run / "checkpoints" / "last.pt")
    assert main(["train", "--resume", str(run)]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_runs_table(tmp_path, configs_dir, capsys):
    assert (
        main(
            [
                "train",
                str(configs_dir / "digits_lstm.toml"),
                "--train.max_steps=3",
                "--model.hidden_size=8",
                "--out",
                str(tmp_path),
                "--quiet",
                "--train.tensorboard=false",
            ]
        )
        == 0
    )
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert main(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "name",
        "task",
        "model",
        "params",
        "steps",
        "best",
        "val",
        "test",
        "baseline",
        "seconds",
    ]
    row = lines[1].split()
    assert row[:5] == [run.name, "classification", "rnn_classifier", f"{summary['params']:,}", "3"]
    assert row[5:7] == ["accuracy", f"{summary['best_val/accuracy']:.4f}"]


class Crash(Exception):
    pass


def _crash_at(step):
    def crash(trainer):
        if trainer.step == step:
            raise Crash  # like a kill: nothing after this step is saved

    return crash


def test_tbptt_language_model_resumes_exactly(tmp_path, configs_dir):
    from seqlab.runs import train_experiment
    from seqlab.train.config import load_experiment

    args = [
        "--train.max_steps=10",
        "--train.checkpoint_every=4",
        "--train.eval_every=0",
        "--train.log_every=1",
        "--train.batch_size=8",
        "--train.tbptt_steps=16",
        "--model.hidden_size=16",
        "--model.embedding_size=8",
        "--train.tensorboard=false",
        "--data.seq_len=16",
    ]
    exp = load_experiment(configs_dir / "charlm_lstm.toml", args)
    straight = train_experiment(exp, out=tmp_path / "a", argv=[], progress=False)
    with pytest.raises(Crash):
        train_experiment(exp, out=tmp_path / "b", argv=[], progress=False, callbacks={"on_step_end": [_crash_at(6)]})
    (crashed,) = (tmp_path / "b").iterdir()
    ckpt = torch.load(crashed / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["position"]["stream_state"] is not None  # mid-epoch, state carried
    resumed = train_experiment(None, resume=crashed, argv=[], progress=False)
    a, b = _weights(straight), _weights(resumed)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    steps = [
        json.loads(line)["step"]
        for line in (resumed / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in line
    ]
    assert steps == list(range(1, 11))  # steps 5 and 6 of the crashed session were dropped, not repeated


def test_resume_applies_and_announces_changed_train_settings(tmp_path, configs_dir):
    from seqlab.runs import train_experiment
    from seqlab.train.config import load_experiment

    exp = load_experiment(
        configs_dir / "digits_lstm.toml",
        [
            "--train.max_steps=4",
            "--model.hidden_size=8",
            "--train.tensorboard=false",
            "--train.schedule=constant",
            "--train.log_every=1",
            "--train.warmup_steps=0",
        ],
    )
    run = train_experiment(exp, out=tmp_path, argv=[], progress=False)
    notes = []
    train_experiment(
        None,
        resume=run,
        overrides=["--train.max_steps=6", "--train.lr=0.5"],
        argv=[],
        progress=False,
        notify=notes.append,
    )
    assert notes == [
        f"resuming {run} at step 4 with changed settings:\n"
        "  train.lr: checkpoint 0.005, now 0.5\n  train.max_steps: checkpoint 4, now 6"
    ]
    lrs = {
        r["step"]: r["train/lr"]
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if "train/lr" in r
    }
    assert lrs[4] == pytest.approx(0.005) and lrs[5] == pytest.approx(0.5) and lrs[6] == pytest.approx(0.5)


def test_resume_drops_a_killed_runs_half_line_and_later_steps(tmp_path):
    from seqlab.train.reporting import MetricsLog

    lines = [json.dumps({"step": s, "train/loss": 1.0 / s}) for s in (1, 2, 3)]
    # a run killed mid-write: steps past the checkpoint (step 2), then half a line
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 4, "train/lo')
    log = MetricsLog(tmp_path, tensorboard=False, resume_step=2)
    log.log(3, {"train/loss": 0.25})
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "train/loss": 1.0}, {"step": 2, "train/loss": 0.5}, {"step": 3, "train/loss": 0.25}]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temp file left beside it


def test_resume_refuses_a_new_batch_size_mid_epoch_and_leaves_the_run(tmp_path, configs_dir, capsys):
    args = ["--train.max_steps=4", "--model.hidden_size=8", "--train.tensorboard=false", "--quiet"]
    assert main(["train", str(configs_dir / "digits_lstm.toml"), *args, "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    (run / "summary.json").unlink()  # as a run killed after its step-4 checkpoint
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--train.max_steps=8", "--train.batch_size=16", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"seqlab train: error: cannot resume {run} with a new train.batch_size (checkpoint 32, now 16): it stopped "
        "4 batches into epoch 1, a position counted in the checkpoint's batches, so the rest of the epoch would "
        "skip or repeat examples; resume with the checkpoint's value; the run is left as it was"
    )
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main(["train", "--resume", str(run), "--train.max_steps=8", "--quiet"]) == 0  # a new budget is fine


def test_user_mistakes_are_one_line_errors(tmp_path, configs_dir, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text((configs_dir / "digits_lstm.toml").read_text().replace("[train]", "train = 3\n[xtrain]"))
    assert main(["train", str(bad)]) == 2
    assert "unknown section [xtrain]" in capsys.readouterr().err
    bad.write_text('train = 3\n[model]\nname = "rnn_classifier"\n[data]\nname = "digits"\n')
    assert main(["train", str(bad)]) == 2
    assert "[train] must be a table of keys, got 3" in capsys.readouterr().err
    run = tmp_path / "notarun"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"weights": torch.zeros(2)}, run / "checkpoints" / "last.pt")
    assert main(["eval", str(run)]) == 2
    assert "is not a seqlab checkpoint: it has no model, model_config" in capsys.readouterr().err
    out = tmp_path / "runs"
    assert main(["train", str(configs_dir / "digits_lstm.toml"), "--train.tbptt_steps=8", "--out", str(out)]) == 2
    assert "needs a stream dataset" in capsys.readouterr().err
    assert not out.exists()  # refused before any run directory was made
    assert main(["train", str(configs_dir / "digits_lstm.toml"), "--train.metric=f1", "--out", str(out)]) == 2
    assert "train.metric='f1' is not measured for task 'classification'" in capsys.readouterr().err

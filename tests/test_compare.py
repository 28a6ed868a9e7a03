"""seqlab compare: families on one task and budget, the table against the runs' summaries, resuming."""

from __future__ import annotations

import json
import os
import signal
import statistics
from pathlib import Path

import pytest

import seqlab.experiments.compare as compare
from seqlab.cli import main
from seqlab.experiments.compare import parse_families, plan_compare
from seqlab.train.config import load_experiment

# Shrunk so that the four runs (2 families x 2 seeds) train in a few seconds on one core.
SHRINK = [
    "--budget-steps",
    "4",
    "--train.eval_every=2",
    "--train.log_every=2",
    "--train.tensorboard=false",
    "--model.hidden_size=64",
    "--quiet",
]
HEADER = [
    "family",
    "model",
    "width",
    "params",
    "test/accuracy (mean ± std over 2 seeds)",
    "train seconds (mean)",
    "steps/s (mean)",
]


def compare_args(configs_dir: Path, out: Path, models: str = "lstm,transformer", seeds: int = 2) -> list[str]:
    return [
        "compare",
        str(configs_dir / "digits_lstm.toml"),
        "--models",
        models,
        "--seeds",
        str(seeds),
        "--out",
        str(out),
        *SHRINK,
    ]


def table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def summaries(out: Path, family: str) -> list[dict]:
    runs = sorted((out / "runs").glob(f"{family}-seed*"))
    return [json.loads((run / "summary.json").read_text()) for run in runs]


CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "digits"
    assert main(compare_args(CONFIGS, out)) == 0
    return out


def test_table_columns_and_numbers_are_the_summaries(compared):
    rows = table_rows((compared / "compare.md").read_text())
    assert rows[0] == HEADER
    assert [r[0] for r in rows[2:]] == ["lstm", "transformer"]
    for row in rows[2:]:
        s = summaries(compared, row[0])
        assert len(s) == 2 and all(x["steps"] == 4 for x in s)
        acc = [x["test/accuracy"] for x in s]
        assert row[4] == f"{statistics.fmean(acc):.4f} ± {statistics.stdev(acc):.4f}"
        assert row[3] == f"{s[0]['params']:,}" and s[0]["params"] == s[1]["params"]
        assert row[5] == f"{statistics.fmean(x['seconds'] for x in s):.1f}"
        assert row[6] == f"{statistics.fmean(x['steps'] / x['seconds'] for x in s):.1f}"
    data = json.loads((compared / "compare.json").read_text())
    assert data["metric"] == "test/accuracy"
    lstm = data["families"][0]
    assert lstm["values"] == [x["test/accuracy"] for x in summaries(compared, "lstm")]
    assert lstm["std"] == pytest.approx(statistics.stdev(lstm["values"]), rel=1e-12)


def test_curves_png_is_written(compared):
    png = compared / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000


def test_mean_validation_records_average_the_seeds(compared):
    from seqlab.diagnostics.curves import mean_validation_records, read_metrics

    runs = sorted((compared / "runs").glob("lstm-seed*"))
    mean = mean_validation_records([run / "metrics.jsonl" for run in runs])
    assert [r["step"] for r in mean] == [2, 4] and all("train/loss" not in r for r in mean)
    at_4 = [
        next(r["val/loss"] for r in read_metrics(run / "metrics.jsonl") if r["step"] == 4 and "val/loss" in r)
        for run in runs
    ]
    assert mean[1]["val/loss"] == pytest.approx(sum(at_4) / 2)


def test_match_params_trained_counts_within_10_percent(compared):
    lstm, transformer = summaries(compared, "lstm")[0]["params"], summaries(compared, "transformer")[0]["params"]
    assert abs(transformer / lstm - 1) <= 0.10


@pytest.mark.parametrize("first", ["lstm", "rnn", "transformer"])
def test_match_params_plans_every_family_within_10_percent(configs_dir, first):
    exp = load_experiment(configs_dir / "digits_lstm.toml")
    families = parse_families(",".join([first] + [f for f in ("rnn", "lstm", "gru", "transformer") if f != first]))
    plan = plan_compare(exp, families, match="params")
    target = plan.members[0].params
    assert plan.members[0].family == first
    for m in plan.members:
        assert abs(m.params / target - 1) <= 0.10, (m.family, m.width, m.params, target)
        assert m.params == compare.count_params(m.model)  # the meta-device count is the built model's


def test_match_hidden_gives_every_family_the_first_width(configs_dir):
    exp = load_experiment(configs_dir / "digits_lstm.toml")
    plan = plan_compare(exp, ("lstm", "gru", "transformer"), match="hidden")
    assert [m.width for m in plan.members] == [128, 128, 128]
    params = [m.params for m in plan.members]
    assert params[0] == 71_946 and params[1] < 0.9 * params[0]  # a GRU has 3 gates to the LSTM's 4


def test_interrupted_compare_continues_without_retraining(tmp_path, configs_dir, monkeypatch):
    """SIGINT during the second run; the rerun keeps the first run untouched and resumes the second."""
    out = tmp_path / "cmp"
    calls, started = [], []
    real = compare.train_experiment

    def interrupt_second_run(*args, **kwargs):
        calls.append(kwargs.get("resume"))
        started.append(1)
        if len(started) == 2:  # the second run of the first call only
            stop = lambda trainer: os.kill(os.getpid(), signal.SIGINT) if trainer.step == 2 else None  # noqa: E731
            kwargs["callbacks"] = {"on_step_end": [stop]}
        return real(*args, **kwargs)

    monkeypatch.setattr(compare, "train_experiment", interrupt_second_run)
    args = compare_args(configs_dir, out, models="lstm,gru")
    assert main(args) == 128 + signal.SIGINT
    first, second = sorted((out / "runs").glob("lstm-seed*"))
    assert (first / "summary.json").is_file() and not (second / "summary.json").is_file()
    assert (second / "checkpoints" / "last.pt").is_file() and not (out / "compare.md").exists()
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.rglob("*") if p.is_file()}

    calls.clear()
    assert main(args) == 0
    assert calls == [second, None, None]  # the first run skipped, the second resumed, gru's two trained
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.rglob("*") if p.is_file()} == kept
    assert sorted((out / "runs").glob("lstm-seed*")) == [first, second]  # resumed in place, no new directory
    assert json.loads((second / "summary.json").read_text())["steps"] == 4
    steps = [json.loads(line)["step"] for line in (second / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 4 and 3 in steps  # trained on after the interruption at step 3


def test_a_deleted_summary_is_finished_by_resuming_only_that_run(tmp_path, configs_dir, monkeypatch):
    out = tmp_path / "cmp"
    args = compare_args(configs_dir, out, models="lstm", seeds=2)
    assert main(args) == 0
    first, second = sorted((out / "runs").glob("lstm-seed*"))
    before = json.loads((second / "summary.json").read_text())
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.rglob("*") if p.is_file()}
    (second / "summary.json").unlink()
    calls = []
    real = compare.train_experiment
    monkeypatch.setattr(compare, "train_experiment", lambda *a, **kw: calls.append(kw.get("resume")) or real(*a, **kw))
    assert main(args) == 0
    assert calls == [second]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.rglob("*") if p.is_file()} == kept
    after = json.loads((second / "summary.json").read_text())
    assert after["test/accuracy"] == before["test/accuracy"] and after["steps"] == before["steps"] == 4


def test_a_changed_plan_in_the_same_out_is_refused(compared, configs_dir, capsys):
    args = compare_args(configs_dir, compared)
    args[args.index("--budget-steps") + 1] = "5"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train.max_steps: run 4, now 5" in err and "another --out" in err


@pytest.mark.parametrize(
    "config, models, message",
    [
        (
            "digits_lstm.toml",
            "lstm,mlp",
            "unknown model family 'mlp' in --models; families: rnn, lstm, gru, transformer",
        ),
        (
            "copy_lstm.toml",
            "lstm,transformer",
            "model family 'transformer' has no model for sequence_labeling data "
            "'copy_memory'; families that do: rnn, lstm, gru",
        ),
        ("charlm_lstm.toml", "lstm,transformer", "give --train.tbptt_steps=0"),
    ],
)
def test_a_family_without_a_model_exits_2(tmp_path, configs_dir, capsys, config, models, message):
    assert main(["compare", str(configs_dir / config), "--models", models, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "x").exists()  # refused before anything was trained or written


def test_seq2seq_rnn_family_names_the_cells_it_takes(configs_dir):
    from seqlab.config import ConfigError

    exp = load_experiment(configs_dir / "dates_gru_attention.toml")
    with pytest.raises(ConfigError) as err:
        plan_compare(exp, ("gru", "rnn"))
    assert "'rnn' has no model" in str(err.value) and "seq2seq_rnn takes no cell 'rnn'" in str(err.value)
    assert str(err.value).endswith("families that do: lstm, gru, transformer")


def test_a_setting_one_family_cannot_take_is_named_as_such(configs_dir):
    """model.init = 'chrono' (or a forget-gate bias) on the rnn family: the setting is the problem, not the task."""
    from seqlab.config import ConfigError

    exp = load_experiment(configs_dir / "digits_lstm.toml", ["--model.init=chrono", "--model.chrono_max=8"])
    assert [m.family for m in plan_compare(exp, ("lstm", "gru")).members] == ["lstm", "gru"]
    with pytest.raises(ConfigError) as err:
        plan_compare(exp, ("lstm", "rnn"))
    assert "has no model" not in str(err.value)
    assert str(err.value) == (
        "the rnn family (rnn_classifier with cell 'rnn'): model.init = 'chrono' sets a gate's bias, and "
        "model.cell = 'rnn' has no gate; use lstm, gru or layernorm_lstm; or leave it out with --models"
    )

"""The training engine in-process: TBPTT, schedules, accumulation, early stopping, non-finite loss."""

import json
import math
import time
import warnings

import pytest
import torch
import torch.nn as nn

from seqlab.data import TensorSequenceDataset
from seqlab.models import LanguageModelConfig, RNNLanguageModel
from seqlab.train.checkpoint import load_checkpoint
from seqlab.train.config import TrainConfig
from seqlab.train.optim import lr_factor
from seqlab.train.stops import NonFiniteLoss
from seqlab.train.trainer import Trainer

FAST = dict(tensorboard=False, layer_norms_every=0, grad_clip=0.0, log_every=1, eval_every=0)


class Streams(TensorSequenceDataset):
    """A token stream cut into B rows and consecutive chunks (what char_lm's .streams() gives)."""

    def __init__(self, ids: torch.Tensor):
        super().__init__(ids[:-1].view(1, -1), ids[1:].view(1, -1))
        self.ids = ids

    def streams(self, batch_size: int, bptt: int):
        L = len(self.ids) // batch_size
        rows = self.ids[: batch_size * L].view(batch_size, L)  # (B, L)
        return [(rows[:, i : i + bptt], rows[:, i + 1 : i + 1 + bptt]) for i in range(0, L - 1, bptt)]


def _lm(seed=0):
    torch.manual_seed(seed)
    return RNNLanguageModel(LanguageModelConfig(vocab_size=7, embedding_size=5, hidden_size=6, num_layers=1))


def test_tbptt_carries_state_and_cuts_gradient():
    ids = torch.randint(0, 7, (4 * 20 + 1,), generator=torch.Generator().manual_seed(1))
    data = Streams(ids)
    cfg = TrainConfig(batch_size=4, tbptt_steps=5, max_steps=2, optimizer="sgd", momentum=0.0, lr=0.5, **FAST)
    model = _lm()
    reference = _lm()
    seen_states = []
    original_forward = model.forward

    def spy(x, y=None, state=None):
        seen_states.append(state)
        return original_forward(x, y, state=state)

    model.forward = spy
    Trainer(model, cfg, data, None, task="language_model", progress=False).fit()

    # The trainer passed no state to chunk 0 and chunk 0's final state, detached, to chunk 1.
    assert seen_states[0] is None
    h, c = seen_states[1]
    assert h.grad_fn is None and c.grad_fn is None and not h.requires_grad
    chunks = data.streams(4, 5)

    # The same two SGD steps by hand: chunk 1 starts from chunk 0's state with the graph cut.
    opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    _, loss, state = reference(*chunks[0])
    loss.backward()
    opt.step()
    opt.zero_grad()
    assert torch.allclose(state[0].detach(), h, atol=1e-6)  # the carried state is chunk 0's final state
    _, loss, _ = reference(chunks[1][0], chunks[1][1], state=tuple(s.detach() for s in state))
    loss.backward()
    opt.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name

    # Without the cut, the gradient of chunk 1 would reach chunk 0's computation: a different step.
    full = _lm()
    opt = torch.optim.SGD(full.parameters(), lr=0.5)
    _, loss, state = full(*chunks[0])
    loss.backward()
    opt.step()
    opt.zero_grad()
    _, loss0, state = full(*chunks[0])
    _, loss1, _ = full(chunks[1][0], chunks[1][1], state=state)
    loss1.backward()
    g_full = full.rnn.weight_hh_l0.grad.clone()
    full.zero_grad()
    _, loss1, _ = full(chunks[1][0], chunks[1][1], state=tuple(s.detach() for s in state))
    loss1.backward()
    assert not torch.allclose(g_full, full.rnn.weight_hh_l0.grad, atol=1e-4)


def test_tbptt_needs_stream_dataset():
    data = TensorSequenceDataset(torch.zeros(8, 3, dtype=torch.long), torch.zeros(8, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="needs a stream dataset"):
        Trainer(_lm(), TrainConfig(tbptt_steps=4, max_steps=1, **FAST), data, None, task="language_model")


def test_schedules():
    cos = TrainConfig(schedule="cosine", warmup_steps=10, max_steps=110)
    assert lr_factor(cos, 0, 110) == pytest.approx(0.1)
    assert lr_factor(cos, 9, 110) == pytest.approx(1.0)
    assert lr_factor(cos, 60, 110) == pytest.approx(0.5)
    assert lr_factor(cos, 110, 110) == pytest.approx(0.0)
    noam = TrainConfig(schedule="noam", warmup_steps=100)
    assert lr_factor(noam, 99, 1000) == pytest.approx(1.0)  # peak at the end of warm-up
    assert lr_factor(noam, 49, 1000) == pytest.approx(0.5)  # linear before
    assert lr_factor(noam, 399, 1000) == pytest.approx(0.5)  # 1/sqrt(step) after: 100/400
    assert lr_factor(TrainConfig(), 5, 10) == 1.0
    floor = TrainConfig(schedule="cosine", warmup_steps=10, lr=1e-3, min_lr=1e-4)  # nanoGPT's ends at lr / 10
    assert lr_factor(floor, 9, 110) == pytest.approx(1.0)
    assert lr_factor(floor, 60, 110) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(floor, 110, 110) == pytest.approx(0.1)


def test_optimizer_betas_and_decay_of_matrices_only():
    from seqlab.train.optim import build_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1, beta2=0.99))
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.1
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1, decay="matrices"))
    decayed, plain = opt.param_groups
    assert [p.shape for p in decayed["params"]] == [(4, 3)] and decayed["weight_decay"] == 0.1
    assert [tuple(p.shape) for p in plain["params"]] == [(4,), (4,), (4,)] and plain["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="train.min_lr must be between 0 and train.lr = 0.001, got 0.01"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match=r"train.beta2 must be in \[0, 1\), got 1.0"):
        TrainConfig(beta2=1.0)


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 2)

    def forward(self, x, y=None):
        out = self.lin(x)
        return out, nn.functional.cross_entropy(out, y)


def _toy(n=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return TensorSequenceDataset(x, (x[:, 0] > 0).long())


def test_gradient_accumulation_equals_big_batch():
    data = _toy()
    a, b = Linear(), Linear()
    cfg = dict(max_steps=3, optimizer="sgd", momentum=0.0, lr=0.3, **FAST)
    # One "epoch" is one batch of 32, so both runs see the same examples per step.
    Trainer(a, TrainConfig(batch_size=32, **cfg), data, None, task="classification", progress=False).fit()
    torch.manual_seed(0)
    t = Trainer(b, TrainConfig(batch_size=8, grad_accum=4, **cfg), data, None, task="classification", progress=False)
    t.fit()
    assert t.step == 3
    assert torch.allclose(a.lin.weight, b.lin.weight, atol=1e-6)


def test_a_checkpoint_at_an_epochs_last_step_records_the_next_epochs_start():
    """Written by the step that used the epoch up, before fit moves on: it said (epoch 0, batch 4 of 4), and a
    resume with a new batch size was refused as "mid-epoch"; nothing of that epoch is left to skip or repeat."""
    trainer = Trainer(Linear(), TrainConfig(batch_size=8, max_steps=9, **FAST), _toy(), None, task="classification")
    assert trainer.batches_per_epoch == 4
    trainer.epoch, trainer.batch_in_epoch = 0, 3
    assert trainer.state_dict()["position"] == {"epoch": 0, "batch": 3, "stream_state": None}
    trainer.batch_in_epoch = 4
    assert trainer.state_dict()["position"] == {"epoch": 1, "batch": 0, "stream_state": None}


def test_a_nan_validation_value_is_never_the_best():
    trainer = Trainer(Linear(), TrainConfig(batch_size=8, max_steps=1, **FAST), _toy(), None, task="regression")
    assert trainer.mode == "min" and trainer.best is None
    assert not trainer._improved(float("nan"))  # the first evaluation's NaN does not become the best
    assert trainer._improved(1.2)
    trainer.best = 1.2
    assert not trainer._improved(float("nan")) and not trainer._improved(1.2) and trainer._improved(0.9)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    class Explodes(Linear):
        calls = 0

        def forward(self, x, y=None):
            out, loss = super().forward(x, y)
            Explodes.calls += self.training
            return out, (loss * float("nan") if Explodes.calls == 7 else loss)

    cfg = TrainConfig(batch_size=8, max_steps=20, checkpoint_every=5, **FAST)
    trainer = Trainer(Explodes(), cfg, _toy(), None, task="classification", run_dir=tmp_path, progress=False)
    with pytest.raises(NonFiniteLoss) as err:
        trainer.fit()
    msg = str(err.value)
    assert "non-finite at step 7" in msg
    assert f"{tmp_path / 'checkpoints' / 'last.pt'} (step 5), was kept" in msg
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 5
    logged = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]  # nothing logged from the bad step on


def test_early_stopping_and_best_checkpoint(tmp_path):
    data = _toy()
    cfg = TrainConfig(
        batch_size=8,
        max_steps=200,
        eval_every=1,
        early_stopping_patience=3,
        lr=1e-9,
        tensorboard=False,
        layer_norms_every=0,
    )
    trainer = Trainer(Linear(), cfg, data, data, task="classification", run_dir=tmp_path, progress=False)
    result = trainer.fit()
    # With lr ~ 0 the validation accuracy never changes: the first evaluation sets the best, the
    # next three do not improve on it, and the run stops after step 4.
    assert result["stopped_early"] and result["steps"] == 4
    assert trainer.bad_evals == 3
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["best"] == pytest.approx(trainer.best)


def test_early_stopping_when_every_validation_value_is_nan(tmp_path, capsys):
    """No NaN becomes the best, so early stopping finds no best to quote (it raised a TypeError formatting None)."""

    class NanInEval(Linear):
        def forward(self, x, y=None):
            out, loss = super().forward(x, y)
            return out, loss if self.training else loss * float("nan")

    cfg = TrainConfig(batch_size=8, max_steps=50, early_stopping_patience=2, **{**FAST, "eval_every": 1})
    trainer = Trainer(NanInEval(), cfg, _toy(), _toy(), task="regression", run_dir=tmp_path, progress=True)
    result = trainer.fit()
    assert result["stopped_early"] and result["steps"] == 2 and trainer.best is None
    assert "has not improved for 2 evaluations (no finite value yet)" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


def test_logs_throughput_lr_grad_norms_and_tensorboard(tmp_path):
    class Slow(Linear):
        def forward(self, x, y=None):
            time.sleep(0.01)  # every step takes at least 10 ms
            return super().forward(x, y)

    cfg = TrainConfig(batch_size=8, max_steps=4, log_every=2, layer_norms_every=2, eval_every=0, lr=0.1)
    Trainer(Slow(), cfg, _toy(), None, task="classification", run_dir=tmp_path, progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == [2, 4]
    for r in train:
        # Each window is 2 steps of 8 samples, at least 20 ms: at most 800 samples/s.
        assert 0 < r["train/samples_per_s"] <= 800 and r["train/tokens_per_s"] == r["train/samples_per_s"]
        assert r["train/lr"] == pytest.approx(0.1) and r["train/grad_norm"] > 0
        assert 0 <= r["train/accuracy"] <= 1
    # Wall time of the run so far: at least 10 ms a step, and growing.
    assert train[0]["train/seconds"] >= 0.02 and train[1]["train/seconds"] >= train[0]["train/seconds"] + 0.02
    layers = [r for r in records if "grad_norm/lin.weight" in r]
    assert [r["step"] for r in layers] == [2, 4] and all(r["grad_norm/lin.bias"] >= 0 for r in layers)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [2, 4]
    assert loss[-1].value == pytest.approx(train[-1]["train/loss"], rel=1e-6)


def test_bf16_autocast_trains():
    cfg = TrainConfig(batch_size=8, max_steps=8, precision="bf16", lr=0.1, **FAST)
    model = Linear()
    dtypes = []
    model.lin.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    before = model.lin.weight.clone()
    result = Trainer(model, cfg, _toy(), None, task="classification", progress=False).fit()
    assert result["steps"] == 8 and result["epochs"] == 2.0  # 8 batches of 8 over 32 examples
    assert dtypes == [torch.bfloat16] * 8  # the matmul ran in bf16 under autocast
    assert model.lin.weight.dtype == torch.float32 and not torch.equal(before, model.lin.weight)
    assert math.isfinite(model.lin.weight.sum().item())


def test_same_seed_same_run_on_cpu(tmp_path, configs_dir):
    from seqlab.runs import train_experiment
    from seqlab.train.config import load_experiment

    args = [
        "--train.max_steps=6",
        "--model.hidden_size=8",
        "--model.num_layers=2",
        "--model.dropout=0.5",
        "--train.tensorboard=false",
    ]
    runs = [
        train_experiment(
            load_experiment(configs_dir / "digits_lstm.toml", args), out=tmp_path / str(i), argv=[], progress=False
        )
        for i in range(2)
    ]
    other = train_experiment(
        load_experiment(configs_dir / "digits_lstm.toml", [*args, "--train.seed=1"]),
        out=tmp_path / "other",
        argv=[],
        progress=False,
    )
    a, b, c = (load_checkpoint(r / "checkpoints" / "last.pt")["model"] for r in (*runs, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_at_each_evaluation_by_default(tmp_path):
    seen = {}
    cfg = TrainConfig(batch_size=8, max_steps=12, eval_every=5, tensorboard=False, layer_norms_every=0)
    trainer = Trainer(Linear(), cfg, _toy(), _toy(), task="classification", run_dir=tmp_path, progress=False)
    trainer.add_callback(
        "on_step_end",
        lambda t: seen.setdefault(
            t.step,
            load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"]
            if (tmp_path / "checkpoints" / "last.pt").exists()
            else None,
        ),
    )
    trainer.fit()
    assert [seen[k] for k in (4, 5, 9, 10, 11)] == [None, 5, 5, 10, 10]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 12


def test_per_epoch_evaluation_and_early_stopping(tmp_path):
    # 32 examples, batch 8: 4 steps per epoch; eval_every=0 evaluates at each epoch's end.
    cfg = TrainConfig(batch_size=8, epochs=3, eval_every=0, tensorboard=False, layer_norms_every=0, lr=0.05)
    Trainer(Linear(), cfg, _toy(), _toy(), task="classification", run_dir=tmp_path, progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val/loss" in r] == [4, 8, 12]
    cfg = TrainConfig(
        batch_size=8,
        epochs=50,
        eval_every=0,
        early_stopping_patience=2,
        lr=1e-9,
        tensorboard=False,
        layer_norms_every=0,
    )
    result = Trainer(Linear(), cfg, _toy(), _toy(), task="classification", progress=False).fit()
    assert result["stopped_early"] and result["steps"] == 12  # best at epoch 1, no better at 2 and 3
    assert result["epochs"] == 3.0  # three whole passes over the 32 examples


def test_gradient_accumulation_over_epochs_uses_every_batch():
    # 10 batches per epoch, 3 per step: steps of 3, 3, 3 and 1 batches, then a new epoch.
    cfg = TrainConfig(batch_size=8, grad_accum=3, epochs=2, **FAST)
    used = []
    model = Linear()
    forward = model.forward
    model.forward = lambda x, y=None: (used.append(len(x)), forward(x, y))[1]
    trainer = Trainer(model, cfg, _toy(80), None, task="classification", progress=False)
    assert trainer.total_steps == 8
    trainer.fit()
    assert len(used) == 20 and trainer.step == 8 and trainer.epoch == 2


@pytest.mark.slow
def test_compile_trains_like_eager(tmp_path, configs_dir):
    from seqlab.runs import train_experiment
    from seqlab.train.config import load_experiment

    args = ["--train.max_steps=3", "--model.hidden_size=8", "--train.tensorboard=false", "--train.eval_every=0"]
    runs, nets = {}, {}
    for compile_ in (False, True):
        exp = load_experiment(configs_dir / "digits_lstm.toml", [*args, f"--train.compile={str(compile_).lower()}"])
        runs[compile_] = train_experiment(
            exp,
            out=tmp_path / str(compile_),
            argv=[],
            progress=False,
            callbacks={"on_step_end": [lambda t, c=compile_: nets.setdefault(c, type(t.net).__name__)]},
        )
    assert nets == {False: "SequenceClassifier", True: "OptimizedModule"}
    eager, compiled = (load_checkpoint(runs[c] / "checkpoints" / "last.pt")["model"] for c in (False, True))
    assert all(torch.allclose(eager[k], compiled[k], atol=1e-5) for k in eager)


def test_progress_plain_lines_off_a_terminal_and_a_bar_on_one():
    import io

    from seqlab.train.reporting import Progress

    plain = io.StringIO()
    p = Progress(200, stream=plain)
    for step in range(1, 201):
        p.update(step, {"loss": 1.0 / step})
    p.close()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 20 and lines[-1].startswith("step 200/200  loss 0.005")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    p = Progress(200, stream=tty)
    p.update(100, {"loss": 0.5, "acc": 0.75, "samples/s": 1000.0})
    p.bar.refresh()
    p.close()
    text = tty.getvalue()
    assert "\r" in text and "100/200" in text and "loss=0.5" in text and "acc=0.75" in text and "samples/s=1000" in text


@pytest.mark.parametrize("small,accum,big", [(4, 2, 8), (3, 3, 9)])
def test_partial_accumulation_group_steps_like_one_batch(small, accum, big):
    # 10 rows: batches of `small` accumulated `accum` at a time take the same steps as batches of
    # `big` = small * accum, the epoch's short last group (1 or 2 rows) included.
    data = _toy(10)
    cfg = dict(epochs=1, optimizer="sgd", momentum=0.0, lr=0.5, **FAST)
    a, b = Linear(), Linear()
    Trainer(a, TrainConfig(batch_size=big, **cfg), data, None, task="classification", progress=False).fit()
    t = Trainer(
        b, TrainConfig(batch_size=small, grad_accum=accum, **cfg), data, None, task="classification", progress=False
    )
    assert t.total_steps == 2
    t.fit()
    assert torch.allclose(a.lin.weight, b.lin.weight, atol=1e-6) and torch.allclose(a.lin.bias, b.lin.bias, atol=1e-6)


def test_distributed_sampler_drops_a_last_batch_too_small_to_share():
    from seqlab.train.distributed import DistInfo, DistributedBatchSampler, batch_rows

    assert batch_rows(9, 4) == [4, 4, 1]
    assert batch_rows(9, 4, world_size=2, drop_small_last=True) == [4, 4]
    assert batch_rows(10, 4, world_size=2, drop_small_last=True) == [4, 4, 2]
    shards = [
        list(DistributedBatchSampler(9, 4, seed=0, epoch=0, info=DistInfo(r, 2), drop_small_last=True))
        for r in range(2)
    ]
    assert [len(s) for s in shards] == [2, 2]
    rows = torch.cat([idx for s in shards for idx, _ in s]).sort().values
    order = DistributedBatchSampler(9, 4, seed=0, epoch=0).order
    assert torch.equal(rows, order[:8].sort().values)  # both processes together cover the first 8
    assert all(n == 4 for s in shards for _, n in s)
    # Evaluation keeps everything: empty shards are allowed there.
    assert [n for _, n in DistributedBatchSampler(9, 4, seed=0, epoch=0, shuffle=False, info=DistInfo(1, 2))] == [
        4,
        4,
        1,
    ]


def test_fit_counts_passes_over_the_data():
    cfg = TrainConfig(batch_size=8, max_steps=6, lr=0.1, **FAST)
    result = Trainer(Linear(), cfg, _toy(), None, task="classification", progress=False).fit()
    assert result["steps"] == 6 and result["epochs"] == 1.5  # 4 batches a pass: one pass and half of the next


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_takes_bf16_only_where_native_and_bf16_where_emulated_warns(monkeypatch, native):
    from seqlab.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert trainer_module.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert trainer_module.resolve_precision("fp32", cpu) == "fp32"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert trainer_module.resolve_precision("bf16", cpu) == "bf16"  # as asked, either way
    said = [str(w.message) for w in caught]
    assert (said == []) if native else ("set --train.precision=auto" in said[0] and len(said) == 1)
    cfg = TrainConfig(batch_size=8, max_steps=1, precision="auto", **FAST)
    trainer = Trainer(Linear(), cfg, _toy(), None, task="classification", progress=False)
    assert trainer.precision == ("bf16" if native else "fp32")

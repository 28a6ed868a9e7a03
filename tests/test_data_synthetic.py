"""The adding problem and the copy memory task: layout, determinism, and baselines vs formulas."""

import math

import pytest
import torch

from seqlab.data import AddingConfig, CopyMemoryConfig, adding_problem, copy_memory
from seqlab.data.synthetic import build_adding, build_copy_memory


@pytest.mark.parametrize("T", [2, 7, 50])
def test_adding_layout(T):
    x, y = adding_problem(500, T, 0)
    assert x.shape == (500, T, 2) and y.shape == (500, 1) and x.dtype == y.dtype == torch.float32
    values, markers = x[..., 0], x[..., 1]
    assert float(values.min()) >= 0.0 and float(values.max()) < 1.0
    assert torch.equal(markers.sum(1), torch.full((500,), 2.0))
    assert set(markers.unique().tolist()) <= {0.0, 1.0}
    half = T // 2
    assert torch.equal(markers[:, :half].sum(1), torch.ones(500))  # one marker in each half
    assert torch.allclose(y[:, 0], (values * markers).sum(1), atol=1e-6)


def test_adding_baseline_mse_matches_one_sixth():
    x, y = adding_problem(40000, 20, 1)
    mse = float(((y - 1.0) ** 2).mean())  # always predict the mean, 1
    # Var((y-1)^2) = 1/15 - 1/36, so the standard error at N=40000 is about 0.001.
    assert abs(mse - 1 / 6) < 0.004
    assert abs(float(y.mean()) - 1.0) < 0.01
    splits = build_adding(AddingConfig(seq_len=20, num_train=10, num_val=10, num_test=10))
    assert splits.info["baseline"]["mse"] == pytest.approx(1 / 6, abs=1e-12)


def test_adding_splits_are_deterministic_and_independent_of_sizes():
    a = build_adding(AddingConfig(seq_len=30, num_train=50, num_val=20, num_test=20, seed=3))
    b = build_adding(AddingConfig(seq_len=30, num_train=80, num_val=20, num_test=20, seed=3))
    c = build_adding(AddingConfig(seq_len=30, num_train=50, num_val=20, num_test=20, seed=4))
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.test.x, b.test.x)  # test does not move with num_train
    assert torch.equal(
        a.train.x, build_adding(AddingConfig(seq_len=30, num_train=50, num_val=20, num_test=20, seed=3)).train.x
    )
    assert not torch.equal(a.test.x, c.test.x)
    assert not torch.equal(a.train.x[:20], a.val.x)
    assert a.info["input_shape"] == (30, 2) and a.info["target_shape"] == (1,)


@pytest.mark.parametrize("T", [1, 5, 40])
def test_copy_memory_layout(T):
    x, y = copy_memory(300, T, 0)
    L = T + 20
    assert x.shape == y.shape == (300, L) and x.dtype == y.dtype == torch.int64
    data = x[:, :10]
    assert int(data.min()) >= 1 and int(data.max()) <= 8
    assert torch.equal(x[:, T + 9], torch.full((300,), 9))  # the delimiter after T - 1 blanks
    rest = torch.cat([x[:, 10 : T + 9], x[:, T + 10 :]], 1)
    assert int(rest.abs().sum()) == 0  # blanks everywhere else
    assert int(y[:, : T + 10].abs().sum()) == 0 and torch.equal(y[:, T + 10 :], data)


def test_copy_memory_baseline_matches_formula():
    T = 30
    x, y = copy_memory(20000, T, 2)
    L = T + 20
    # The memoryless strategy: blank with probability 1 for the first T + 10 steps, then 1/8 each.
    p = torch.zeros(L, 10)
    p[: T + 10, 0] = 1.0
    p[T + 10 :, 1:9] = 1 / 8
    ce = float(-torch.log(p[torch.arange(L), y]).mean())
    formula = 10 * math.log(8) / (T + 20)
    assert ce == pytest.approx(formula, rel=1e-6)
    # No memoryless predictor does better: the per-step entropy of the targets is that number.
    entropy = 0.0
    for t in range(L):
        q = torch.bincount(y[:, t], minlength=10).double() / len(y)
        entropy -= float((q[q > 0] * q[q > 0].log()).sum())
    assert entropy / L == pytest.approx(formula, rel=2e-3)
    splits = build_copy_memory(CopyMemoryConfig(seq_len=T, num_train=10, num_val=10, num_test=10))
    assert splits.info["baseline"]["cross_entropy"] == pytest.approx(formula, rel=1e-12)


def test_copy_memory_one_hot_and_determinism():
    cfg = CopyMemoryConfig(seq_len=12, num_train=40, num_val=8, num_test=8, seed=5)
    a, b = build_copy_memory(cfg), build_copy_memory(cfg)
    assert a.train.x.shape == (40, 32, 10) and a.train.x.dtype == torch.float32
    assert torch.equal(a.train.x.sum(-1), torch.ones(40, 32))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    ids = build_copy_memory(CopyMemoryConfig(seq_len=12, num_train=40, num_val=8, num_test=8, seed=5, one_hot=False))
    assert torch.equal(ids.train.x, a.train.x.argmax(-1)) and ids.info["input_shape"] == (32,)
    assert a.info["input_shape"] == (32, 10) and a.info["num_classes"] == 10


def test_bad_lengths_are_errors():
    with pytest.raises(ValueError, match="seq_len >= 2"):
        adding_problem(3, 1)
    with pytest.raises(ValueError, match="data.num_train must be >= 1, got 0"):
        CopyMemoryConfig(num_train=0)

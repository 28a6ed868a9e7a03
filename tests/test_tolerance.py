"""tests/tolerance.py: the parity helper passes within atol, fails past it, and its message names the tensor."""

import pytest
import torch

from tolerance import ALLCLOSE_ATOL, ALLCLOSE_RTOL, PARITY_TOL, assert_close


def test_parity_tolerance_is_the_project_standard():
    assert PARITY_TOL == 1e-5
    assert (ALLCLOSE_ATOL, ALLCLOSE_RTOL) == (1e-8, 1e-5)  # torch.allclose's defaults


def test_passes_within_atol_and_fails_past_it_naming_the_tensor():
    expected = torch.tensor([1.0, -2.0, 3.0])
    assert_close(expected + torch.tensor([0.0, 9e-6, -9e-6]), expected, "h_n")  # within 1e-5
    with pytest.raises(AssertionError) as info:
        assert_close(expected + torch.tensor([0.0, 3.2e-4, 0.0]), expected, "h_n")
    msg = str(info.value)
    assert msg.startswith("h_n: max abs diff 3.2e-04 > atol 1e-05\n")
    assert "Mismatched elements: 1 / 3" in msg and "at index (1,)" in msg  # torch's own report follows


def test_atol_and_rtol_are_the_callers():
    a, b = torch.tensor([100.0]), torch.tensor([100.001])
    assert_close(a, b, "loss", atol=2e-3)
    with pytest.raises(AssertionError, match=r"^loss: max abs diff 1\.0e-03 > atol 1e-05"):
        assert_close(a, b, "loss")
    # rtol: |a - b| <= atol + rtol |b|, torch.allclose's rule (1e-8 + 1e-5 * 100 = 1e-3 allowed here)
    assert_close(a, b, "loss", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    assert torch.allclose(a, b)
    with pytest.raises(AssertionError, match=r"^loss: max abs diff 1\.0e-03, not within atol 1e-08 \+ rtol 1e-06"):
        assert_close(a, b, "loss", atol=ALLCLOSE_ATOL, rtol=1e-6)


def test_exact_comparison_with_zero_tolerance():
    x = torch.randn(4, 3)
    assert_close(x.clone(), x, "x", atol=0.0)
    with pytest.raises(AssertionError, match=r"^x: max abs diff"):
        assert_close(x + 1e-7, x, "x", atol=0.0)


def test_sequences_compare_pairwise_and_name_the_failing_item():
    grads = (torch.zeros(2), torch.ones(3), torch.full((2, 2), 5.0))
    assert_close(list(grads), grads, "grads")  # a list against a tuple: items compared, not the containers
    off = (grads[0], grads[1], grads[2] + torch.eye(2) * 1e-3)
    with pytest.raises(AssertionError, match=r"^grads\[2\]: max abs diff 1\.0e-03 > atol 1e-05"):
        assert_close(off, grads, "grads")
    with pytest.raises(AssertionError, match=r"^grads: 2 items, expected 3"):
        assert_close(grads[:2], grads, "grads")
    with pytest.raises(AssertionError, match=r"^grads: cannot compare a tuple with a Tensor"):
        assert_close(grads, grads[0], "grads")
    assert_close((None, torch.ones(1)), (None, torch.ones(1)), "grads")  # unused parameters' None gradients


def test_shape_dtype_and_nan_are_checked_and_named():
    x = torch.ones(3)
    with pytest.raises(AssertionError, match=r"^y: The values for attribute 'shape' do not match"):
        assert_close(x, torch.ones(1, 3), "y")  # no broadcasting
    with pytest.raises(AssertionError, match=r"^y: The values for attribute 'dtype' do not match"):
        assert_close(x, x.double(), "y")
    assert_close(x, x.double(), "y", check_dtype=False)  # extra keywords go to torch.testing.assert_close
    nan = torch.tensor([float("nan"), 1.0])
    with pytest.raises(AssertionError, match=r"^w: "):
        assert_close(nan, nan.clone(), "w")
    assert_close(nan, nan.clone(), "w", equal_nan=True)


def test_tensors_that_require_grad():
    w = torch.randn(3, requires_grad=True)
    assert_close(w * 1.0, w.detach(), "w")
    with pytest.raises(AssertionError, match=r"^w: max abs diff 1\.0e\+00 > atol 1e-05"):
        assert_close(w + 1.0, w.detach(), "w")

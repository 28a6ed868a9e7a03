"""The tests' one tolerance helper: torch.testing.assert_close, with a failure message that names the tensor.

    from tolerance import assert_close

    assert_close(h_n, h_ref, "h_n")                  # |h_n - h_ref| <= PARITY_TOL everywhere, same shape and dtype
    assert_close(grads, grads_ref, "grads")          # sequences pairwise: a failure names grads[2]
    assert_close(y.float(), y0.float(), "y", atol=2e-2)  # a deliberately looser check says so at the call

A failure reads "h_n: max abs diff 3.2e-04 > atol 1e-05", then torch's own report (how many elements,
where the worst one is). pytest puts tests/ on sys.path (pyproject.toml: pythonpath), so the tests import
this module by its name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# The project's standard: every from-scratch module equals torch (or its reference) within 1e-5, absolute.
PARITY_TOL = 1e-5

# torch.allclose's defaults (|a - b| <= 1e-8 + 1e-5 |b|): the tolerance of the checks first written with
# torch.allclose, kept as they were when they moved to assert_close.
ALLCLOSE_ATOL, ALLCLOSE_RTOL = 1e-8, 1e-5


def assert_close(actual, expected, name: str, *, atol: float = PARITY_TOL, rtol: float = 0.0, **kwargs) -> None:
    """|actual - expected| <= atol + rtol |expected| at every element, with equal shapes, dtypes and devices.

    actual, expected: tensors (or None, or Python scalars), or tuples/lists of them compared pair by pair
    (their lengths must agree; the failing item is named name[i]). name: what is compared, the start of
    the failure message. kwargs go to torch.testing.assert_close as they are (check_dtype=False,
    equal_nan=True, ...). The comparison runs in the tensors' dtype, as (a - b).abs().max().item() <= atol
    did for float32.
    """
    __tracebackhide__ = True  # pytest shows the test's line, not this one
    if isinstance(actual, (tuple, list)) or isinstance(expected, (tuple, list)):
        if not (isinstance(actual, (tuple, list)) and isinstance(expected, (tuple, list))):
            raise AssertionError(f"{name}: cannot compare a {type(actual).__name__} with a {type(expected).__name__}")
        if len(actual) != len(expected):
            raise AssertionError(f"{name}: {len(actual)} items, expected {len(expected)}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, f"{name}[{i}]", atol=atol, rtol=rtol, **kwargs)
        return
    torch.testing.assert_close(
        actual, expected, atol=atol, rtol=rtol, msg=_message(name, actual, expected, atol, rtol), **kwargs
    )


def _message(name: str, actual, expected, atol: float, rtol: float) -> Callable[[str], str]:
    """torch's message (given on failure only) under a first line that names the tensor and the tolerance."""

    def message(torch_msg: str) -> str:
        same_kind = (
            isinstance(actual, torch.Tensor)
            and isinstance(expected, torch.Tensor)
            and (actual.shape, actual.dtype, actual.device) == (expected.shape, expected.dtype, expected.device)
        )
        if not same_kind or actual.numel() == 0:  # torch's message says which attribute differs
            return f"{name}: {torch_msg}"
        diff = (actual.detach().double() - expected.detach().double()).abs().max().item()
        first = f"max abs diff {diff:.1e} > atol {atol:g}"
        if rtol:  # the bound is per element then: say so, not ">"
            first = f"max abs diff {diff:.1e}, not within atol {atol:g} + rtol {rtol:g} * |expected|"
        return f"{name}: {first}\n{torch_msg}"

    return message

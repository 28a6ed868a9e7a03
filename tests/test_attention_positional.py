"""Positional encodings: the paper's sinusoids, learned tables, and RoPE's relative-position property."""

import math

import pytest
import torch

import seqlab.nn as snn
from seqlab.nn.positional import apply_rotary

from tolerance import ALLCLOSE_ATOL, ALLCLOSE_RTOL, assert_close


def test_sinusoidal_matches_the_papers_formula():
    max_len, d = 12, 10
    pe = snn.sinusoidal_encoding(max_len, d)
    assert pe.shape == (max_len, d)
    for pos in range(max_len):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_odd_width_and_module_offsets():
    pe = snn.sinusoidal_encoding(5, 7)
    assert pe[3, 6].item() == pytest.approx(math.sin(3 / 10000 ** (6 / 7)), abs=1e-6)
    enc = snn.SinusoidalPositionalEncoding(8, max_len=20)
    x = torch.randn(2, 5, 8)
    pe = snn.sinusoidal_encoding(20, 8)
    assert_close(enc(x), x + pe[:5], "x + positions 0..4", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    assert_close(enc(x, offset=3), x + pe[3:8], "x + positions 3..7", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    assert "pe" not in enc.state_dict()  # rebuilt from (max_len, d_model), not saved
    with pytest.raises(ValueError, match=r"positions 18..22 exceed max_len=20"):
        enc(x, offset=18)
    with pytest.raises(ValueError, match=r"expected input \(B, T, 8\), got \(2, 5, 6\)"):
        enc(torch.randn(2, 5, 6))


def test_learned_positions_add_their_rows():
    enc = snn.LearnedPositionalEncoding(4, max_len=10)
    x = torch.randn(3, 6, 4)
    assert torch.equal(enc(x, offset=2), x + enc.weight[2:8])
    assert enc.weight.requires_grad and enc.weight.shape == (10, 4)


@pytest.mark.parametrize("cls", [snn.SinusoidalPositionalEncoding, snn.LearnedPositionalEncoding])
def test_positional_encodings_take_d_model_first_and_max_len_by_keyword(cls):
    enc = cls(6, max_len=9)
    assert (enc.d_model, enc.max_len) == (6, 9)
    with pytest.raises(TypeError):  # a positional max_len could be silently swapped with d_model
        cls(6, 9)


def test_rope_dot_products_depend_only_on_relative_position():
    torch.manual_seed(0)
    d = 16
    q, k = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)

    def score(m, n):
        qm = apply_rotary(q.view(1, d), torch.tensor([m]))
        kn = apply_rotary(k.view(1, d), torch.tensor([n]))
        return (qm * kn).sum().item()

    for m, n in [(0, 0), (3, 1), (7, 2), (5, 9)]:
        for shift in (1, 4, 13):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-9)
    assert abs(score(3, 1) - score(3, 2)) > 1e-3  # and it does depend on the offset m - n


def test_rope_rotates_pairs_and_keeps_norms():
    rope = snn.RotaryEmbedding(4, base=100.0)
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]] * 3)  # (T=3, 4)
    y = rope(x)
    for t in range(3):
        a0, a1 = t * 1.0, t * 100 ** (-2 / 4)  # theta_0 = 1, theta_1 = base^(-2/d)
        expected = [math.cos(a0), math.sin(a0), -math.sin(a1), math.cos(a1)]
        assert y[t].tolist() == pytest.approx(expected, abs=1e-6)
    z = torch.randn(2, 3, 5, 4)
    assert_close(rope(z).norm(dim=-1), z.norm(dim=-1), "norms", atol=1e-6, rtol=ALLCLOSE_RTOL)
    shifted = rope(torch.cat([z[..., :2, :], z], -2))[..., 2:3, :]
    assert_close(rope(z, offset=2)[..., :1, :], shifted, "rotation at offset 2", atol=1e-6, rtol=ALLCLOSE_RTOL)
    with pytest.raises(ValueError, match="even head_dim, got 5"):
        snn.RotaryEmbedding(5)


def test_rotary_embedding_table_equals_apply_rotary_bit_for_bit_as_it_grows():
    rope = snn.RotaryEmbedding(16)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        for T, offset in ((5, 0), (1, 63), (1, 64), (130, 3), (1, 300)):  # the table grows past 64, then 256
            x = torch.randn(2, 3, T, 16).to(dtype)
            expected = apply_rotary(x, torch.arange(offset, offset + T), 10000.0)
            assert torch.equal(rope(x, offset=offset), expected), (dtype, T, offset)
    assert rope._tables[(torch.device("cpu"), torch.float32)][0].shape == (512, 8)


def test_rotary_table_made_under_inference_mode_still_trains():
    rope = snn.RotaryEmbedding(8)
    with torch.inference_mode():
        rope(torch.randn(1, 4, 8))  # e.g. generation before training
    x = torch.randn(1, 4, 8, requires_grad=True)
    rope(x).sum().backward()  # the table is a plain tensor: it can be saved for backward
    assert x.grad is not None and torch.isfinite(x.grad).all()

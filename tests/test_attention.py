"""Scaled dot-product attention, masks and MultiHeadAttention against torch's, value by value."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import seqlab.nn as snn
from seqlab.nn import masks
from seqlab.nn.functional import scaled_dot_product_attention as sdpa

from tolerance import ALLCLOSE_ATOL, ALLCLOSE_RTOL, assert_close


def _qkv(B=2, H=3, T_q=5, T_k=7, d_k=8, d_v=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g).requires_grad_()  # noqa: E731
    return mk(B, H, T_q, d_k), mk(B, H, T_k, d_k), mk(B, H, T_k, d_v)


def _bool_mask(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(*shape, generator=g) > 0.4
    m[..., 0] = True  # every row sees at least one key, so torch's answer is defined
    return m


def _float_mask(shape, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


MASKS = {
    "none": lambda T_q, T_k: {},
    "bool": lambda T_q, T_k: {"attn_mask": _bool_mask((T_q, T_k))},
    "bool_batched": lambda T_q, T_k: {"attn_mask": _bool_mask((2, 1, T_q, T_k))},
    "float": lambda T_q, T_k: {"attn_mask": _float_mask((2, 3, T_q, T_k))},
    "causal": lambda T_q, T_k: {"is_causal": True},
}


@pytest.mark.parametrize("impl", ["reference", "fused", "auto"])
@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("d_v", [8, 5])
def test_sdpa_matches_torch_outputs_and_gradients(impl, mask, d_v):
    T_q, T_k = (6, 6) if mask == "causal" else (5, 7)
    q, k, v = _qkv(T_q=T_q, T_k=T_k, d_v=d_v)
    kwargs = MASKS[mask](T_q, T_k)
    ours = sdpa(q, k, v, impl=impl, **kwargs)
    grads_ours = torch.autograd.grad(ours.pow(2).sum(), (q, k, v))
    theirs = F.scaled_dot_product_attention(q, k, v, **kwargs)
    grads_theirs = torch.autograd.grad(theirs.pow(2).sum(), (q, k, v))
    assert ours.shape == (2, 3, T_q, d_v)
    assert_close(ours, theirs, "output")
    assert_close(grads_ours, grads_theirs, "grads (q, k, v)")


@pytest.mark.parametrize("impl", ["reference", "fused", "auto"])
@pytest.mark.parametrize("T_q,T_k", [(4, 7), (7, 4)])
def test_sdpa_is_causal_matches_torch_when_lengths_differ(impl, T_q, T_k):
    """torch's is_causal is top-left aligned: query i sees keys j <= i, whatever T_k."""
    q, k, v = _qkv(T_q=T_q, T_k=T_k)
    ours = sdpa(q, k, v, is_causal=True, impl=impl)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert ours.shape == (2, 3, T_q, 8)
    assert_close(ours, theirs, "output")
    grads_ours = torch.autograd.grad(ours.pow(2).sum(), (q, k, v))
    grads_theirs = torch.autograd.grad(theirs.pow(2).sum(), (q, k, v))
    assert_close(grads_ours, grads_theirs, "grads (q, k, v)")
    _, w = sdpa(q, k, v, is_causal=True, impl="reference", return_weights=True)
    assert torch.equal(w != 0, torch.ones(T_q, T_k, dtype=torch.bool).tril().expand_as(w))


def test_sdpa_scale_and_weights_follow_the_formula():
    q, k, v = _qkv(d_v=4)
    m = _bool_mask((5, 7))
    out, w = sdpa(q, k, v, attn_mask=m, scale=0.3, return_weights=True)
    scores = (q @ k.transpose(-2, -1) * 0.3).masked_fill(~m, float("-inf"))
    expected_w = torch.softmax(scores, dim=-1)
    assert w.shape == (2, 3, 5, 7)
    assert_close(w, expected_w, "weights")
    assert_close(out, expected_w @ v, "output")
    assert torch.all(w[..., ~m] == 0)
    fused = sdpa(q, k, v, attn_mask=m, scale=0.3, impl="fused")
    assert_close(fused, out, "fused output")


def test_causal_with_a_mask_combines_both():
    q, k, v = _qkv(T_q=6, T_k=6)
    pad = masks.key_padding_mask(torch.tensor([6, 4]), 6)  # (2, 1, 1, 6)
    both = masks.combine(masks.causal_mask(6), pad)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=both)
    for impl in ("reference", "fused"):
        got = sdpa(q, k, v, attn_mask=pad, is_causal=True, impl=impl)
        assert_close(got, expected, f"{impl} output")


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_give_zeros_and_finite_gradients(impl, kind):
    q, k, v = _qkv(T_q=4, T_k=5)
    allowed = _bool_mask((4, 5))
    allowed[2] = False  # query 2 may attend to nothing
    mask = allowed if kind == "bool" else masks.to_float(allowed)
    out = sdpa(q, k, v, attn_mask=mask, impl=impl)
    assert torch.all(out[:, :, 2] == 0)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.all(grads[0][:, :, 2] == 0)  # the empty row's query gets no gradient
    # The other rows are what they would be without the empty one.
    keep = [0, 1, 3]
    alone = F.scaled_dot_product_attention(q[:, :, keep], k, v, attn_mask=allowed[keep])
    assert_close(out[:, :, keep], alone, "output of the other rows")


def test_fully_masked_rows_have_zero_weights():
    q, k, v = _qkv(T_q=3, T_k=4)
    m = torch.ones(3, 4, dtype=torch.bool)
    m[0] = False
    _, w = sdpa(q, k, v, attn_mask=m, return_weights=True)
    assert torch.all(w[:, :, 0] == 0)
    assert_close(w[:, :, 1:].sum(-1), torch.ones(2, 3, 2), "weight sums", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)


def test_sdpa_errors_name_the_shapes():
    q, k, v = _qkv(T_q=5, T_k=7)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 7\) does not broadcast .* \(2, 3, 5, 7\)"):
        sdpa(q, k, v, attn_mask=torch.ones(4, 7, dtype=torch.bool))
    with pytest.raises(
        ValueError, match=r"key and value must have the same length .*key \(2, 3, 7, 8\), value \(2, 3, 6, 8\)"
    ):
        sdpa(q, k, v[:, :, :6])
    with pytest.raises(ValueError, match=r"share d_k .*query \(2, 3, 5, 8\), key \(2, 3, 7, 4\)"):
        sdpa(q, k[..., :4], v)
    with pytest.raises(ValueError, match="impl must be one of"):
        sdpa(q, k, v, impl="flash")
    with pytest.raises(ValueError, match="cannot return the attention weights"):
        sdpa(q, k, v, impl="fused", return_weights=True)
    with pytest.raises(TypeError, match="bool .* or float"):
        sdpa(q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.long))


# ---------------------------------------------------------------------------------- masks


def test_causal_mask_values_and_offset():
    assert masks.causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # Two new queries after three cached keys sit at positions 3 and 4.
    assert masks.causal_mask(2, 5, offset=3).tolist() == [
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]


def test_padding_masks_from_lengths():
    assert masks.padding_mask(torch.tensor([3, 1, 0]), 4).tolist() == [
        [True, True, True, False],
        [True, False, False, False],
        [False, False, False, False],
    ]
    assert masks.padding_mask(torch.tensor([2, 1])).shape == (2, 2)
    assert masks.key_padding_mask(torch.tensor([2, 1]), 3).shape == (2, 1, 1, 3)
    with pytest.raises(ValueError, match="max_len=2 is shorter than the longest sequence \\(3\\)"):
        masks.padding_mask(torch.tensor([3, 1]), 2)


def test_combine_and_conversions():
    a = torch.tensor([[True, False], [True, True]])
    b = torch.tensor([[False, True], [True, True]])
    assert masks.combine(a, None, b).tolist() == [[False, False], [True, True]]
    assert masks.combine(None, None) is None
    f = torch.tensor([[0.5, 0.0], [1.0, -1.0]])
    mixed = masks.combine(a, f)
    assert mixed.tolist() == [[0.5, float("-inf")], [1.0, -1.0]]
    assert masks.to_float(a).tolist() == [[0.0, float("-inf")], [0.0, 0.0]]
    assert masks.from_ignore_mask(a).tolist() == [[False, True], [False, False]]
    assert masks.from_ignore_mask(f) is f
    shape = masks.combine(masks.causal_mask(3), masks.key_padding_mask(torch.tensor([3, 2]), 3)).shape
    assert shape == (2, 1, 3, 3)


def test_from_torch_mha_mask_shapes():
    ignore = torch.zeros(2 * 4, 3, 5, dtype=torch.bool)
    ignore[1, 0, 2] = True  # batch 0, head 1, query 0, key 2
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    m = masks.from_torch_mha(ignore, pad, num_heads=4)
    assert m.shape == (2, 4, 3, 5)
    assert not m[0, 1, 0, 2] and m[0, 0, 0, 2]
    assert not m[1, :, :, 3:].any() and m[1, :, :, :3].all()
    with pytest.raises(ValueError, match="pass num_heads"):
        masks.from_torch_mha(ignore)


# ------------------------------------------------------------------------- MultiHeadAttention


def _torch_mha(batch_first, d_model=16, num_heads=4, kdim=None, vdim=None, bias=True, seed=0):
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(d_model, num_heads, batch_first=batch_first, kdim=kdim, vdim=vdim, bias=bias).eval()
    with torch.no_grad():  # non-zero biases, so that copying them is tested
        for p in m.parameters():
            if p.dim() == 1:
                p.normal_(0, 0.1)
    return m


def _run_torch(m, q, k, v, **kwargs):
    if not m.batch_first:
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))
    out, w = m(q, k, v, average_attn_weights=False, **kwargs)
    return (out if m.batch_first else out.transpose(0, 1)), w


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", ["none", "padding", "causal", "both"])
def test_mha_from_torch_parity(batch_first, mask):
    """A drop-in replacement: the same call, in torch's layout ((T, B, E) unless batch_first), the same numbers."""
    B, T, d = 3, 6, 16
    theirs = _torch_mha(batch_first)
    ours = snn.MultiHeadAttention.from_torch(theirs)
    assert ours.batch_first == batch_first
    x = torch.randn(B, T, d) if batch_first else torch.randn(T, B, d)
    x.requires_grad_()
    lengths = torch.tensor([6, 4, 1])
    torch_kwargs, our_kwargs = {}, {}
    if mask in ("padding", "both"):
        torch_kwargs["key_padding_mask"] = ~masks.padding_mask(lengths, T)  # torch: True = ignore
        our_kwargs["attn_mask"] = masks.key_padding_mask(lengths, T)
    if mask == "causal":
        torch_kwargs["attn_mask"] = nn.Transformer.generate_square_subsequent_mask(T)  # float, -inf above
        our_kwargs["is_causal"] = True
    if mask == "both":
        torch_kwargs["attn_mask"] = torch.ones(T, T, dtype=torch.bool).triu(1)  # True = ignore the future
        # torch's two masks through the converter, in place of our own
        our_kwargs["attn_mask"] = masks.from_torch_mha(torch_kwargs["attn_mask"], torch_kwargs["key_padding_mask"])
        assert torch.equal(
            our_kwargs["attn_mask"], masks.combine(masks.causal_mask(T), masks.key_padding_mask(lengths, T))
        )

    out_t, w_t = theirs(x, x, x, need_weights=True, average_attn_weights=False, **torch_kwargs)
    out_o, w_o = ours(
        x, x, x, attn_mask=our_kwargs.get("attn_mask"), is_causal=our_kwargs.get("is_causal", False), need_weights=True
    )
    assert out_o.shape == x.shape and w_o.shape == (B, 4, T, T)
    assert_close(out_o, out_t, "output")
    assert_close(w_o, w_t, "weights")

    # gradients, through the fused path (need_weights=False on both sides)
    out_t, _ = theirs(x, x, x, need_weights=False, **torch_kwargs)
    out_o, _ = ours(x, attn_mask=our_kwargs.get("attn_mask"), is_causal=our_kwargs.get("is_causal", False))
    gy = torch.randn_like(out_t)
    g_t = torch.autograd.grad(out_t, [x, theirs.in_proj_weight, theirs.out_proj.weight], gy)
    g_o = torch.autograd.grad(
        out_o, [x, ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight, ours.out_proj.weight], gy
    )
    assert_close(g_o[0], g_t[0], "grad x")
    assert_close(torch.cat(g_o[1:4]), g_t[1], "grad in_proj_weight")
    assert_close(g_o[4], g_t[2], "grad out_proj.weight")


def test_mha_from_torch_cross_attention_with_kdim_vdim_and_no_bias():
    theirs = _torch_mha(True, kdim=10, vdim=6, bias=False)
    ours = snn.MultiHeadAttention.from_torch(theirs)
    q, k, v = torch.randn(2, 3, 16), torch.randn(2, 5, 10), torch.randn(2, 5, 6)
    out_t, w_t = _run_torch(theirs, q, k, v)
    out_o, w_o = ours(q, k, v, need_weights=True)
    assert ours.q_proj.bias is None
    assert_close(out_o, out_t, "output")
    assert_close(w_o, w_t, "weights")


@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_from_torch_cross_attention_in_torch_layout(batch_first):
    """T_q != T_k and B != both, so a transpose in the wrong place cannot go unnoticed."""
    theirs = _torch_mha(batch_first, kdim=10, vdim=6)
    ours = snn.MultiHeadAttention.from_torch(theirs)
    shape = (lambda B, T, E: (B, T, E)) if batch_first else (lambda B, T, E: (T, B, E))  # noqa: E731
    q, k, v = torch.randn(*shape(2, 3, 16)), torch.randn(*shape(2, 5, 10)), torch.randn(*shape(2, 5, 6))
    out_t, w_t = theirs(q, k, v, average_attn_weights=False)
    out_o, w_o = ours(q, k, v, need_weights=True)
    assert out_o.shape == out_t.shape == shape(2, 3, 16) and w_o.shape == w_t.shape == (2, 4, 3, 5)
    assert_close(out_o, out_t, "output")
    assert_close(w_o, w_t, "weights")
    # Asked for batch-first, the same module reads (B, T, E) whatever torch's layout.
    bf = snn.MultiHeadAttention.from_torch(theirs, batch_first=True)
    to_bf = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))  # noqa: E731
    out_bf, _ = bf(to_bf(q), to_bf(k), to_bf(v))
    assert_close(out_bf, to_bf(out_t), "batch-first output")
    if not batch_first:
        assert "batch_first=False" in repr(ours)
        with pytest.raises(ValueError, match=r"expected query \(T_q, B, 16\), got \(3, 2, 8\)"):
            ours(torch.randn(3, 2, 8))
        with pytest.raises(ValueError, match=r"query and key batch sizes differ: query \(3, 2, 16\), key \(5, 4, 10\)"):
            ours(q, torch.randn(5, 4, 10), torch.randn(5, 4, 6))


def test_mha_from_torch_keeps_training_mode_and_rejects_bias_kv():
    m = nn.MultiheadAttention(8, 2, dropout=0.25)
    ours = snn.MultiHeadAttention.from_torch(m)
    assert ours.training and ours.dropout == 0.25
    with pytest.raises(ValueError, match="add_bias_kv"):
        snn.MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))


def test_mha_empty_key_set_gives_bias_not_nan():
    torch.manual_seed(0)
    mha = snn.MultiHeadAttention(8, 2).eval()
    nn.init.normal_(mha.out_proj.bias)
    x = torch.randn(2, 4, 8)
    out, w = mha(x, attn_mask=masks.key_padding_mask(torch.tensor([4, 0]), 4), need_weights=True)
    # attention output 0, then W^O 0 + b
    assert_close(out[1], mha.out_proj.bias.expand(4, 8), "empty row's output", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)
    assert torch.all(w[1] == 0) and torch.isfinite(out).all()


def test_mha_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by num_heads \(3\)"):
        snn.MultiHeadAttention(10, 3)
    mha = snn.MultiHeadAttention(8, 2)
    x = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"expected query \(B, T_q, 8\), got \(2, 4, 6\)"):
        mha(torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match=r"same batch size and length: key \(2, 5, 8\), value \(2, 3, 8\)"):
        mha(x, torch.randn(2, 5, 8), torch.randn(2, 3, 8))
    with pytest.raises(
        ValueError, match=r"attn_mask of shape \(3, 4\) does not fit \(B, heads, T_q, T_k\) = \(2, 2, 4, 4\)"
    ):
        mha(x, attn_mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(2, 3, 4, 4\) does not fit"):
        mha(x, attn_mask=torch.ones(2, 3, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("masks_given", ["padding_bool", "padding_float", "both_bool", "both_mixed"])
def test_mha_key_padding_mask_means_what_torchs_means(batch_first, masks_given):
    """torch's key_padding_mask (True = ignore), passed as is, with and without torch's attn_mask."""
    B, T, S, d = 3, 4, 6, 16
    theirs = _torch_mha(batch_first, seed=3)
    ours = snn.MultiHeadAttention.from_torch(theirs)
    shape = (lambda n: (B, n, d)) if batch_first else (lambda n: (n, B, d))  # noqa: E731
    q, kv = torch.randn(*shape(T)), torch.randn(*shape(S))
    pad = ~masks.padding_mask(torch.tensor([6, 3, 1]), S)  # (B, S), True = ignore (torch's meaning)
    kwargs = {"key_padding_mask": pad}
    if masks_given == "padding_float":
        kwargs["key_padding_mask"] = torch.zeros(B, S).masked_fill(pad, float("-inf")) + _float_mask((B, S))
    if masks_given.startswith("both"):
        kwargs["attn_mask"] = torch.rand(T, S, generator=torch.Generator().manual_seed(4)) > 0.6  # True = ignore
        kwargs["attn_mask"][:, 0] = False  # every query keeps key 0, which no row pads
        if masks_given == "both_mixed":
            kwargs["attn_mask"] = torch.zeros(T, S).masked_fill(kwargs["attn_mask"], float("-inf"))
    torch_kwargs = dict(kwargs)
    if masks_given == "both_mixed":  # torch deprecates a bool padding mask beside a float attn_mask: ours takes it
        torch_kwargs["key_padding_mask"] = torch.zeros(B, S).masked_fill(pad, float("-inf"))
    with torch.no_grad():
        out_t, w_t = theirs(q, kv, kv, average_attn_weights=False, **torch_kwargs)
        # our attn_mask keeps seqlab's meaning (True = may attend): torch's goes through the converter
        our_attn = masks.from_ignore_mask(kwargs.get("attn_mask"))
        out_o, w_o = ours(q, kv, kv, attn_mask=our_attn, key_padding_mask=kwargs["key_padding_mask"], need_weights=True)
        assert_close(out_o, out_t, "output")
        assert_close(w_o, w_t, "weights")
        assert torch.all(w_o[2, :, :, 1:] == 0)  # row 2 has one real key
        fused, _ = ours(q, kv, kv, attn_mask=our_attn, key_padding_mask=kwargs["key_padding_mask"])
        assert_close(fused, out_t, "fused output")
        # the same padding as seqlab's own mask (True = may attend) gives the same numbers
        if masks_given == "padding_bool":
            mine, _ = ours(q, kv, kv, attn_mask=masks.key_padding_mask(torch.tensor([6, 3, 1]), S))
            assert_close(mine, out_t, "output with seqlab's padding mask")


def test_mha_key_padding_mask_with_a_cache_and_bad_shapes():
    torch.manual_seed(0)
    mha = snn.MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 5, 8)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])  # row 1: the last two keys ignored
    full, _ = mha(x, is_causal=True, key_padding_mask=pad)
    cache = snn.KVCache()
    steps = [mha(x[:, t : t + 1], is_causal=True, cache=cache, key_padding_mask=pad[:, : t + 1])[0] for t in range(5)]
    assert_close(torch.cat(steps, dim=1), full, "cached steps")
    with pytest.raises(ValueError, match=r"key_padding_mask must be \(B, T_k\) = \(2, 5\), got \(2, 1, 1, 5\)"):
        mha(x, key_padding_mask=masks.key_padding_mask(torch.tensor([5, 3]), 5))
    with pytest.raises(TypeError, match="key_padding_mask must be bool .* got torch.int64"):
        mha(x, key_padding_mask=torch.zeros(2, 5, dtype=torch.long))


def test_mha_accepts_3d_masks_per_batch():
    torch.manual_seed(0)
    mha = snn.MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 4, 8)
    m = _bool_mask((2, 4, 4))
    a, _ = mha(x, attn_mask=m)
    b, _ = mha(x, attn_mask=m[:, None])
    assert_close(a, b, "output with a 3-d mask", atol=0.0)


@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("chunk", [1, 3])
def test_kv_cache_decoding_equals_one_causal_pass(rotary, chunk):
    torch.manual_seed(0)
    mha = snn.MultiHeadAttention(16, 4, rotary=rotary).eval()
    x = torch.randn(2, 7, 16)
    full, _ = mha(x, is_causal=True)
    cache = snn.KVCache()
    steps = []
    for t in range(0, 7, chunk):
        out, _ = mha(x[:, t : t + chunk], is_causal=True, cache=cache)
        steps.append(out)
    assert len(cache) == 7 and cache.k.shape == (2, 4, 7, 4)
    assert_close(torch.cat(steps, dim=1), full, "cached steps")


def test_static_cache_reuses_projected_memory():
    torch.manual_seed(0)
    mha = snn.MultiHeadAttention(8, 2).eval()
    q, memory = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    cache = snn.KVCache(static=True)
    first, _ = mha(q, memory, cache=cache)
    again, _ = mha(q, memory * 0, cache=cache)  # memory ignored: the cached projection is used
    assert len(cache) == 5 and torch.equal(first, again)
    assert_close(first, mha(q, memory)[0], "cached cross-attention", atol=ALLCLOSE_ATOL, rtol=ALLCLOSE_RTOL)

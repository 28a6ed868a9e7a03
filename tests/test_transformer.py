"""Transformer layers against torch's (outputs and gradients), stacks, and incremental decoding."""

import pytest
import torch
import torch.nn as nn

import seqlab.nn as snn
from seqlab.nn import masks

from tolerance import ALLCLOSE_RTOL, PARITY_TOL, assert_close

D, H, FF = 16, 4, 24


def _randomise(module, seed=0):
    """Non-trivial biases and LayerNorm affines, so that copying every one of them is tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "norm" in name and "weight" in name else 0.0))
    return module.eval()


def _bt(x, batch_first):
    """(B, T, C) -> the layout the torch module expects."""
    return x if batch_first else x.transpose(0, 1)


def _grads(out, params, gy):
    return torch.autograd.grad(out, params, gy)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_encoder_layer_from_torch_parity(norm_first, batch_first, activation):
    torch.manual_seed(0)
    act = nn.GELU(approximate="tanh") if activation == "gelu_tanh" else activation  # torch takes the module
    theirs = _randomise(
        nn.TransformerEncoderLayer(
            D, H, FF, dropout=0.1, activation=act, batch_first=batch_first, norm_first=norm_first
        )
    )
    ours = snn.TransformerEncoderLayer.from_torch(theirs)
    assert not ours.training and ours.norm_first == norm_first and ours.ff.activation == activation
    assert ours.batch_first == batch_first  # the torch layer's layout, (T, B, E) unless batch_first
    x = torch.randn(3, 5, D, requires_grad=True)
    lengths = torch.tensor([5, 3, 2])
    pad_ignore = ~masks.padding_mask(lengths, 5)

    out_t = _bt(theirs(_bt(x, batch_first), src_key_padding_mask=pad_ignore), batch_first)
    out_o, w = ours(_bt(x, batch_first), attn_mask=masks.key_padding_mask(lengths, 5))
    out_o = _bt(out_o, batch_first)
    assert w is None and out_o.shape == (3, 5, D)
    valid = masks.padding_mask(lengths, 5)  # torch's fast path may zero padded positions: compare real ones
    assert_close(out_o[valid], out_t[valid], "output at real positions")

    gy = torch.randn_like(out_o) * valid.unsqueeze(-1)
    p_t = [x, theirs.self_attn.in_proj_weight, theirs.linear1.weight, theirs.norm2.weight]
    p_o = [x, ours.self_attn.q_proj.weight, ours.ff.linear1.weight, ours.norm2.weight]
    g_t, g_o = _grads(out_t, p_t, gy), _grads(out_o, p_o, gy)
    assert_close(g_o[0], g_t[0], "grad x")
    assert_close(g_o[1], g_t[1][:D], "grad q_proj.weight")
    assert_close(g_o[2:], g_t[2:], "grads (linear1.weight, norm2.weight)")


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_decoder_layer_from_torch_parity(norm_first, batch_first):
    torch.manual_seed(1)
    theirs = _randomise(
        nn.TransformerDecoderLayer(
            D, H, FF, dropout=0.1, activation="gelu", batch_first=batch_first, norm_first=norm_first
        )
    )
    ours = snn.TransformerDecoderLayer.from_torch(theirs)
    assert ours.batch_first == batch_first
    x = torch.randn(2, 6, D, requires_grad=True)
    memory = torch.randn(2, 4, D, requires_grad=True)
    mem_lengths = torch.tensor([4, 2])

    out_t = _bt(
        theirs(
            _bt(x, batch_first),
            _bt(memory, batch_first),
            tgt_mask=nn.Transformer.generate_square_subsequent_mask(6),
            tgt_is_causal=True,
            memory_key_padding_mask=~masks.padding_mask(mem_lengths, 4),
        ),
        batch_first,
    )
    out_o, w = ours(
        _bt(x, batch_first),
        _bt(memory, batch_first),
        memory_mask=masks.key_padding_mask(mem_lengths, 4),
        need_weights=True,
    )
    out_o = _bt(out_o, batch_first)
    assert_close(out_o, out_t, "output")
    w_self, w_cross = w
    assert w_self.shape == (2, H, 6, 6) and w_cross.shape == (2, H, 6, 4)
    assert torch.all(w_self.triu(1) == 0) and torch.all(w_cross[1, :, :, 2:] == 0)

    gy = torch.randn_like(out_o)
    p_t = [x, memory, theirs.multihead_attn.out_proj.weight, theirs.norm3.bias]
    p_o = [x, memory, ours.cross_attn.out_proj.weight, ours.norm3.bias]
    assert_close(_grads(out_o, p_o, gy), _grads(out_t, p_t, gy), "grads (x, memory, out_proj.weight, norm3.bias)")


def _seq_first_layers(seed):
    """A sequence-first torch encoder and decoder layer (torch's default layout), dropout 0, in eval mode."""
    torch.manual_seed(seed)
    enc = _randomise(nn.TransformerEncoderLayer(D, H, FF, dropout=0.0), seed)
    dec = _randomise(nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, norm_first=True), seed + 1)
    return enc, dec


def test_from_torch_keeps_a_sequence_first_layout_with_masks():
    """The same (T, B, E) tensors and torch's own masks (converted) give torch's numbers; B != T != S."""
    enc_t, dec_t = _seq_first_layers(3)
    enc, dec = snn.TransformerEncoderLayer.from_torch(enc_t), snn.TransformerDecoderLayer.from_torch(dec_t)
    assert not enc.batch_first and not dec.batch_first
    T, B, S = 5, 3, 4
    src, tgt = torch.randn(T, B, D), torch.randn(T + 1, B, D)
    memory = torch.randn(S, B, D)
    src_pad = ~masks.padding_mask(torch.tensor([5, 4, 2]), T)  # torch: True = ignore
    mem_pad = ~masks.padding_mask(torch.tensor([4, 1, 3]), S)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # torch's meaning: True = ignore (the future)
    with torch.no_grad():
        out_t = enc_t(src, src_mask=causal, src_key_padding_mask=src_pad)
        out_o, _ = enc(src, attn_mask=masks.from_torch_mha(causal, src_pad))
        assert out_o.shape == (T, B, D)
        assert_close(out_o, out_t, "encoder output")
        tgt_mask = nn.Transformer.generate_square_subsequent_mask(T + 1)
        out_t = dec_t(tgt, memory, tgt_mask=tgt_mask, tgt_is_causal=True, memory_key_padding_mask=mem_pad)
        out_o, (w_self, w_cross) = dec(
            tgt, memory, memory_mask=masks.from_torch_mha(key_padding_mask=mem_pad), need_weights=True
        )
        assert out_o.shape == (T + 1, B, D)
        assert_close(out_o, out_t, "decoder output")
        assert w_self.shape == (B, H, T + 1, T + 1) and w_cross.shape == (B, H, T + 1, S)  # batch first, as torch's
        assert torch.all(w_cross[1, :, :, 1:] == 0)


def test_from_torch_batch_first_override():
    """Asked for batch_first=True, a sequence-first torch layer becomes a (B, T, E) one with the same numbers."""
    enc_t, dec_t = _seq_first_layers(5)
    enc = snn.TransformerEncoderLayer.from_torch(enc_t, batch_first=True)
    dec = snn.TransformerDecoderLayer.from_torch(dec_t, batch_first=True)
    assert enc.batch_first and dec.batch_first
    src, memory = torch.randn(3, 5, D), torch.randn(3, 4, D)  # (B, T, E)
    with torch.no_grad():
        out_o, _ = enc(src)
        assert_close(out_o, enc_t(src.transpose(0, 1)).transpose(0, 1), "encoder output")
        out_o, _ = dec(src, memory)
        out_t = dec_t(
            src.transpose(0, 1),
            memory.transpose(0, 1),
            tgt_is_causal=True,
            tgt_mask=nn.Transformer.generate_square_subsequent_mask(5),
        ).transpose(0, 1)
        assert_close(out_o, out_t, "decoder output")
    # and a batch-first torch layer asked for the sequence-first layout
    bf_t = _randomise(nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True), 6)
    sf = snn.TransformerEncoderLayer.from_torch(bf_t, batch_first=False)
    with torch.no_grad():
        assert_close(sf(src.transpose(0, 1))[0].transpose(0, 1), bf_t(src), "sequence-first encoder output")


def test_from_torch_rejects_other_modules_and_activations():
    with pytest.raises(TypeError, match="expected torch.nn.TransformerEncoderLayer, got Linear"):
        snn.TransformerEncoderLayer.from_torch(nn.Linear(2, 2))
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation=nn.Tanh())
    with pytest.raises(ValueError, match="relu or gelu, got Tanh"):
        snn.TransformerEncoderLayer.from_torch(layer)


def test_encoder_stack_returns_every_layers_weights_on_request():
    torch.manual_seed(0)
    enc = snn.TransformerEncoder(D, H, FF, 3, dropout=0.0, norm_first=True).eval()
    x = torch.randn(2, 5, D)
    out, w = enc(x)
    assert w is None and enc.norm is not None
    out2, w2 = enc(x, need_weights=True)
    assert_close(out, out2, "output without weights", atol=PARITY_TOL, rtol=ALLCLOSE_RTOL)
    assert len(w2) == 3 and all(t.shape == (2, H, 5, 5) for t in w2)
    assert_close(w2[0].sum(-1), torch.ones(2, H, 5), "weight sums", atol=PARITY_TOL, rtol=ALLCLOSE_RTOL)
    # the stack is its layers in order, then the final norm
    h = x
    for layer in enc.layers:
        h, _ = layer(h)
    assert_close(enc.norm(h), out, "layers then norm")


def test_post_ln_stack_has_no_final_norm_by_default():
    assert snn.TransformerEncoder(D, H, FF, 1).norm is None
    assert snn.TransformerEncoder(D, H, FF, 1, final_norm=True).norm is not None


def test_transformer_encoder_decoder_shapes_and_causality():
    torch.manual_seed(0)
    model = snn.Transformer(D, H, 2, 2, FF, dropout=0.0).eval()
    src, tgt = torch.randn(2, 7, D), torch.randn(2, 5, D)
    out, w = model(src, tgt, need_weights=True)
    assert out.shape == (2, 5, D)
    assert len(w["encoder"]) == 2 and w["encoder"][0].shape == (2, H, 7, 7)
    assert len(w["decoder"]) == 2 and w["decoder"][1][1].shape == (2, H, 5, 7)
    # causal: changing the last target step leaves earlier outputs unchanged
    tgt2 = tgt.clone()
    tgt2[:, -1] += 1.0
    out2, _ = model(src, tgt2)
    assert_close(out2[:, :-1], out[:, :-1], "outputs before the changed step")
    assert (out2[:, -1] - out[:, -1]).abs().max().item() > 1e-3


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_decoder_from_torch_parity(norm_first):
    """The whole encoder-decoder (2 + 2 layers, both stacks' final norms) against torch.nn.Transformer
    with the same weights: padded source, causal target, outputs and gradients within 1e-5."""
    torch.manual_seed(2)
    theirs = _randomise(nn.Transformer(D, H, 2, 2, FF, dropout=0.0, batch_first=True, norm_first=norm_first), 2)
    ours = snn.Transformer(D, H, 2, 2, FF, dropout=0.0, norm_first=norm_first).eval()
    for mine, their in ((ours.encoder, theirs.encoder), (ours.decoder, theirs.decoder)):
        for i, layer in enumerate(their.layers):
            mine.layers[i] = type(mine.layers[i]).from_torch(layer)
        mine.norm.load_state_dict(their.norm.state_dict())
    src = torch.randn(3, 7, D, requires_grad=True)
    tgt = torch.randn(3, 5, D, requires_grad=True)
    src_lengths = torch.tensor([7, 4, 2])
    src_ignore = ~masks.padding_mask(src_lengths, 7)

    out_t = theirs(
        src,
        tgt,
        tgt_mask=nn.Transformer.generate_square_subsequent_mask(5),
        tgt_is_causal=True,
        src_key_padding_mask=src_ignore,
        memory_key_padding_mask=src_ignore,
    )
    keys = masks.key_padding_mask(src_lengths, 7)
    out_o, _ = ours(src, tgt, src_mask=keys, memory_mask=keys)
    assert_close(out_o, out_t, "output")

    gy = torch.randn_like(out_o)
    e0, d1 = ("encoder", 0), ("decoder", 1)
    layer = lambda model, where: getattr(model, where[0]).layers[where[1]]  # noqa: E731
    p_t = [src, tgt, layer(theirs, e0).linear1.weight, layer(theirs, d1).multihead_attn.out_proj.weight]
    p_t += [layer(theirs, d1).self_attn.in_proj_weight, theirs.encoder.norm.weight, theirs.decoder.norm.bias]
    p_o = [src, tgt, layer(ours, e0).ff.linear1.weight, layer(ours, d1).cross_attn.out_proj.weight]
    p_o += [layer(ours, d1).self_attn.q_proj.weight, ours.encoder.norm.weight, ours.decoder.norm.bias]
    g_t, g_o = _grads(out_t, p_t, gy), _grads(out_o, p_o, gy)
    assert_close(g_o[:4], g_t[:4], "grads (src, tgt, encoder linear1, decoder cross out_proj)")
    assert_close(g_o[4], g_t[4][:D], "grad of the decoder's self-attention q_proj.weight")
    assert_close(g_o[5:], g_t[5:], "grads of the stacks' final norms")
    assert g_o[0][2, 2:].abs().max() == 0  # padded source positions get no gradient


@pytest.mark.parametrize("rotary", [False, True])
def test_decoder_only_stack_incremental_decoding_equals_full_pass(rotary):
    torch.manual_seed(0)
    gpt = snn.DecoderOnlyStack(D, H, 2, rotary=rotary).eval()
    assert gpt.layers[0].norm_first and gpt.layers[0].ff.linear1.out_features == 4 * D
    x = torch.randn(2, 6, D)
    full, _ = gpt(x)
    caches = gpt.new_caches()
    steps = [gpt(x[:, t : t + 1], caches=caches)[0] for t in range(6)]
    assert all(len(c) == 6 for c in caches)
    assert_close(torch.cat(steps, dim=1), full, "cached steps")


def test_decoder_layer_incremental_decoding_with_memory_cache():
    torch.manual_seed(0)
    layer = snn.TransformerDecoderLayer(D, H, FF, dropout=0.0, norm_first=True).eval()
    x, memory = torch.randn(2, 5, D), torch.randn(2, 3, D)
    full, _ = layer(x, memory)
    cache, memory_cache = snn.KVCache(), snn.KVCache(static=True)
    steps = [layer(x[:, t : t + 1], memory, cache=cache, memory_cache=memory_cache)[0] for t in range(5)]
    assert len(cache) == 5 and len(memory_cache) == 3
    assert_close(torch.cat(steps, dim=1), full, "cached steps")


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("chunk", [1, 2])
def test_transformer_incremental_decoding_equals_one_causal_pass(norm_first, chunk):
    torch.manual_seed(0)
    model = _randomise(snn.Transformer(D, H, 2, 2, FF, dropout=0.0, norm_first=norm_first))
    src, tgt = torch.randn(2, 4, D), torch.randn(2, 5, D)  # S != T: the cross-attention's keys are the source's
    full, _ = model(src, tgt)
    caches, memory_caches = model.decoder.new_caches(), model.decoder.new_memory_caches()
    steps = [
        model(src, tgt[:, t : t + chunk], caches=caches, memory_caches=memory_caches)[0] for t in range(0, 5, chunk)
    ]
    assert all(len(c) == 5 for c in caches) and all(c.static and len(c) == 4 for c in memory_caches)
    assert_close(torch.cat(steps, dim=1), full, "cached steps")
    # The decoder alone, given the memory, the same.
    memory, _ = model.encoder(src)
    caches = model.decoder.new_caches()
    steps = [model.decoder(tgt[:, t : t + 1], memory, caches=caches)[0] for t in range(5)]
    assert_close(torch.cat(steps, dim=1), full, "decoder's cached steps")


def test_wrong_number_of_caches_is_an_error():
    gpt = snn.DecoderOnlyStack(D, H, 2)
    with pytest.raises(ValueError, match="expected 2 caches \\(one per layer\\), got 1"):
        gpt(torch.randn(1, 1, D), caches=[snn.KVCache()])
    decoder = snn.TransformerDecoder(D, H, FF, 2)
    with pytest.raises(ValueError, match="expected 2 memory_caches \\(one per layer\\), got 3"):
        decoder(torch.randn(1, 1, D), torch.randn(1, 2, D), memory_caches=[snn.KVCache(static=True)] * 3)

"""seqlab's GPT <-> Hugging Face GPT-2: the one mapping between their parameters, used both ways.

The two models compute the same function (pre-LN blocks, learned positions, tied output), with
different names and one layout difference: GPT-2's ``Conv1D`` computes ``y = x W + b`` with
W (in, out), the transpose of ``nn.Linear``'s (out, in), and it keeps W_q, W_k, W_v as one
``c_attn`` matrix (d, 3 d). GPT-2 always has biases; a seqlab GPT built with ``bias = false`` maps
to zero biases. GPT-2 has no rotary positions, so a rotary GPT has no GPT-2 form.

``transformers`` is imported by the caller (``GPT.from_hf``, ``seqlab.export.hf``), not here:
this module maps tensors and config values only.
"""

from __future__ import annotations

import torch

from .gpt import GPT, GPTConfig

# GPT-2's activation_function -> GPTConfig.activation ("gelu_new" is GPT-2's own tanh approximation).
ACTIVATION_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
ACTIVATION_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
LAYER_NORM_EPS = 1e-5  # torch's LayerNorm default, which seqlab's GPT uses, and GPT-2's


# GPTConfig field -> GPT2Config field, for the sizes both configs hold as they are (one table, both ways).
SAME_FIELDS = (
    ("vocab_size", "vocab_size"),
    ("block_size", "n_positions"),
    ("d_model", "n_embd"),
    ("num_heads", "n_head"),
    ("num_layers", "n_layer"),
)


def check_gpt2_compatible(config: GPTConfig) -> None:
    """ValueError with the reason when ``config`` has no GPT-2 form."""
    if config.positions != "learned":
        raise ValueError(
            f"GPT-2 adds learned positions to the embeddings; this GPT has model.positions = "
            f"{config.positions!r} (GPT-2 has no rotary positions), so it has no GPT-2 form"
        )


def gpt2_config_values(config: GPTConfig) -> dict:
    """Keyword arguments of ``transformers.GPT2Config`` for a model of this config."""
    check_gpt2_compatible(config)
    return dict(
        **{theirs: getattr(config, ours) for ours, theirs in SAME_FIELDS},
        n_inner=config.d_ff or 4 * config.d_model,
        activation_function=ACTIVATION_TO_HF[config.activation],
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=LAYER_NORM_EPS,
        tie_word_embeddings=config.tie_weights,
        bos_token_id=None,
        eos_token_id=None,
    )


def gpt_config_from_gpt2(hf) -> GPTConfig:
    """The GPTConfig of a ``transformers.GPT2Config`` (ValueError naming what seqlab's GPT lacks)."""
    if hf.activation_function not in ACTIVATION_FROM_HF:
        raise ValueError(
            f"GPT-2 config activation_function = {hf.activation_function!r}; seqlab's GPT has "
            f"{', '.join(ACTIVATION_FROM_HF)}"
        )
    unsupported = {
        "layer_norm_epsilon": (hf.layer_norm_epsilon, LAYER_NORM_EPS),
        "scale_attn_weights": (hf.scale_attn_weights, True),
        "scale_attn_by_inverse_layer_idx": (hf.scale_attn_by_inverse_layer_idx, False),
    }
    for key, (got, expected) in unsupported.items():
        if got != expected:
            raise ValueError(f"GPT-2 config {key} = {got!r}; seqlab's GPT computes only {key} = {expected!r}")
    return GPTConfig(
        **{ours: getattr(hf, theirs) for ours, theirs in SAME_FIELDS},
        d_ff=hf.n_inner or 4 * hf.n_embd,
        dropout=hf.resid_pdrop,
        positions="learned",
        bias=True,
        tie_weights=bool(getattr(hf, "tie_word_embeddings", True)),
        activation=ACTIVATION_FROM_HF[hf.activation_function],
    )


def _or_zeros(t: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    return t.detach() if t is not None else like.new_zeros(n)


def to_gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """GPT-2's (``GPT2LMHeadModel``) state dict holding ``model``'s weights (copies)."""
    check_gpt2_compatible(model.config)
    d = model.config.d_model
    sd = {"transformer.wte.weight": model.embed.weight.detach(), "transformer.wpe.weight": model.pos.weight.detach()}
    for i, layer in enumerate(model.stack.layers):
        a, ff, p = layer.self_attn, layer.ff, f"transformer.h.{i}."
        w = torch.cat((a.q_proj.weight, a.k_proj.weight, a.v_proj.weight)).detach()  # (3 d, d), Linear layout
        b = [_or_zeros(m.bias, d, w) for m in (a.q_proj, a.k_proj, a.v_proj)]
        sd |= {
            p + "ln_1.weight": layer.norm1.weight.detach(),
            p + "ln_1.bias": _or_zeros(layer.norm1.bias, d, w),
            p + "attn.c_attn.weight": w.t(),  # (d, 3 d): Conv1D stores (in, out)
            p + "attn.c_attn.bias": torch.cat(b),
            p + "attn.c_proj.weight": a.out_proj.weight.detach().t(),  # (d, d)
            p + "attn.c_proj.bias": _or_zeros(a.out_proj.bias, d, w),
            p + "ln_2.weight": layer.norm2.weight.detach(),
            p + "ln_2.bias": _or_zeros(layer.norm2.bias, d, w),
            p + "mlp.c_fc.weight": ff.linear1.weight.detach().t(),  # (d, d_ff)
            p + "mlp.c_fc.bias": _or_zeros(ff.linear1.bias, ff.linear1.out_features, w),
            p + "mlp.c_proj.weight": ff.linear2.weight.detach().t(),  # (d_ff, d)
            p + "mlp.c_proj.bias": _or_zeros(ff.linear2.bias, d, w),
        }
    sd["transformer.ln_f.weight"] = model.stack.norm.weight.detach()
    sd["transformer.ln_f.bias"] = _or_zeros(model.stack.norm.bias, d, w)
    sd["lm_head.weight"] = model.head.weight.detach()
    return {k: v.clone().contiguous() for k, v in sd.items()}


def from_gpt2_state_dict(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """seqlab GPT's state dict from GPT-2's (``GPT2LMHeadModel`` or ``GPT2Model`` keys)."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    out = {"embed.weight": sd["wte.weight"], "pos.weight": sd["wpe.weight"]}
    for i in range(config.num_layers):
        p, q = f"h.{i}.", f"stack.layers.{i}."
        w_q, w_k, w_v = sd[p + "attn.c_attn.weight"].t().chunk(3)  # (3 d, d) -> 3 x (d, d), Linear layout
        b_q, b_k, b_v = sd[p + "attn.c_attn.bias"].chunk(3)
        out |= {
            q + "norm1.weight": sd[p + "ln_1.weight"],
            q + "norm1.bias": sd[p + "ln_1.bias"],
            q + "self_attn.q_proj.weight": w_q,
            q + "self_attn.k_proj.weight": w_k,
            q + "self_attn.v_proj.weight": w_v,
            q + "self_attn.q_proj.bias": b_q,
            q + "self_attn.k_proj.bias": b_k,
            q + "self_attn.v_proj.bias": b_v,
            q + "self_attn.out_proj.weight": sd[p + "attn.c_proj.weight"].t(),
            q + "self_attn.out_proj.bias": sd[p + "attn.c_proj.bias"],
            q + "norm2.weight": sd[p + "ln_2.weight"],
            q + "norm2.bias": sd[p + "ln_2.bias"],
            q + "ff.linear1.weight": sd[p + "mlp.c_fc.weight"].t(),
            q + "ff.linear1.bias": sd[p + "mlp.c_fc.bias"],
            q + "ff.linear2.weight": sd[p + "mlp.c_proj.weight"].t(),
            q + "ff.linear2.bias": sd[p + "mlp.c_proj.bias"],
        }
    out["stack.norm.weight"], out["stack.norm.bias"] = sd["ln_f.weight"], sd["ln_f.bias"]
    # A tied GPT-2 may store no lm_head at all: the head is then the token embedding.
    out["head.weight"] = sd.get("lm_head.weight", sd["wte.weight"])
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def gpt_from_hf(model_or_dir) -> GPT:
    """A seqlab GPT (eval mode) with the weights of a ``GPT2LMHeadModel`` or of a directory holding one."""
    if isinstance(model_or_dir, torch.nn.Module):
        hf = model_or_dir
    else:
        from transformers import GPT2LMHeadModel  # the optional `hf` extra

        hf = GPT2LMHeadModel.from_pretrained(str(model_or_dir))
    config = gpt_config_from_gpt2(hf.config)
    model = GPT(config)
    model.load_state_dict(from_gpt2_state_dict(hf.state_dict(), config))
    return model.eval()

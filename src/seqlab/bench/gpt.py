"""Benchmark: one GPT training step, seqlab's ``gpt`` against the same model built from torch's layers.

The reference is ``torch.nn.TransformerEncoder`` of ``torch.nn.TransformerEncoderLayer``
(``norm_first=True``, GELU, ``batch_first``, a causal mask with ``is_causal=True``) between the
same token embedding, learned positions, final LayerNorm and tied output projection, holding the
same weights (the eval-mode loss is printed for both: they must agree). One step is forward,
backward and an AdamW update (``zero_grad(set_to_none=True)`` included), on the same batch.
Sizes default to the preset ``configs/shakespeare_char_gpt.toml`` (model, batch, window);
the vocabulary is Tiny Shakespeare's 65 characters. The target compares seqlab's ``gpt`` with
learned positions (torch has no rotary embedding); the preset's rotary ``gpt`` is timed beside
them, in fp32 and, where the CPU computes bf16 natively, under bf16 autocast (the preset's "auto").

Times are medians of interleaved rounds (one step of each model per round, who goes first
rotating), so drift on a shared machine hits all alike. The ratio is seqlab / torch (target
<= 1.10); tokens/s = batch * window / median step time.

    python benchmarks/gpt.py                       # or: seqlab bench gpt
    python benchmarks/gpt.py --repeats 30 --batch 32
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import GPT, GPTConfig
from ..torch_internals import native_bf16
from ..train.config import load_experiment
from .timing import interleaved_times

PRESET = Path("configs/shakespeare_char_gpt.toml")  # run from the repository root
TARGET = 1.10  # seqlab / torch, from the issue
VOCAB = 65  # Tiny Shakespeare's characters


class TorchGPT(nn.Module):
    """The reference: a GPT whose blocks are ``torch.nn.TransformerEncoderLayer(norm_first=True)``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d, d_ff = cfg.d_model, cfg.d_ff or 4 * cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Parameter(torch.zeros(cfg.block_size, d))
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            d, cfg.num_heads, d_ff, cfg.dropout, activation="gelu", batch_first=True, norm_first=True, bias=cfg.bias
        )
        self.encoder = nn.TransformerEncoder(
            layer, cfg.num_layers, norm=nn.LayerNorm(d, bias=cfg.bias), enable_nested_tensor=False
        )
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor, targets: torch.Tensor):
        B, T = x.shape
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device)  # (T, T) float, -inf above
        h = self.drop(self.embed(x) + self.pos[:T])  # (B, T, d_model)
        h = self.encoder(h, mask=mask, is_causal=True)  # (B, T, d_model)
        logits = self.head(h)  # (B, T, V)
        return logits, F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))


@torch.no_grad()
def copy_weights(ours: GPT, theirs: TorchGPT) -> None:
    """Give ``theirs`` the weights of ``ours`` (torch packs W^Q, W^K, W^V into one in_proj)."""
    theirs.embed.weight.copy_(ours.embed.weight)
    theirs.pos.copy_(ours.pos.weight)
    for mine, layer in zip(ours.stack.layers, theirs.encoder.layers):
        a = mine.self_attn
        layer.self_attn.in_proj_weight.copy_(torch.cat((a.q_proj.weight, a.k_proj.weight, a.v_proj.weight)))
        layer.self_attn.out_proj.weight.copy_(a.out_proj.weight)
        if a.q_proj.bias is not None:
            layer.self_attn.in_proj_bias.copy_(torch.cat((a.q_proj.bias, a.k_proj.bias, a.v_proj.bias)))
            layer.self_attn.out_proj.bias.copy_(a.out_proj.bias)
        for dst, src in (
            (layer.linear1, mine.ff.linear1),
            (layer.linear2, mine.ff.linear2),
            (layer.norm1, mine.norm1),
            (layer.norm2, mine.norm2),
        ):
            dst.load_state_dict(src.state_dict())
    theirs.encoder.norm.load_state_dict(ours.stack.norm.state_dict())


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, bf16: bool):
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            _, loss = model(x, y)[:2]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def measure(cfg: GPTConfig, batch: int, seq_len: int, repeats: int, precisions: list[str], lr: float = 1e-3) -> dict:
    """Per precision: median seconds per step of torch, seqlab (learned positions) and seqlab (rotary)."""
    torch.manual_seed(0)
    models = {
        "torch": TorchGPT(cfg),
        "seqlab": GPT(dataclasses.replace(cfg, positions="learned")),
        "seqlab rotary": GPT(dataclasses.replace(cfg, positions="rotary")),
    }
    copy_weights(models["seqlab"], models["torch"])
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, seq_len), generator=g)
    y = torch.randint(0, cfg.vocab_size, (batch, seq_len), generator=g)
    with torch.no_grad():  # same weights, eval mode: the same loss
        check = {k: models[k].eval()(x, y)[1].item() for k in ("seqlab", "torch")}
    result = {"eval_loss": check, "params": sum(p.numel() for p in models["seqlab"].parameters())}
    for precision in precisions:
        fns = {}
        for name, model in models.items():
            opt = torch.optim.AdamW(model.train().parameters(), lr=lr)
            fns[name] = train_step(model, opt, x, y, precision == "bf16")
        result[precision] = {k: statistics.median(v) for k, v in interleaved_times(fns, repeats, warmup=2).items()}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="seqlab bench gpt", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(PRESET), help=f"preset the sizes come from (default {PRESET})")
    p.add_argument("--repeats", type=int, default=20, help="interleaved rounds (default 20)")
    for flag in ("batch", "seq-len", "d-model", "heads", "layers"):
        p.add_argument(f"--{flag}", type=int, help="override the preset's value")
    p.add_argument("--dropout", type=float, help="override the preset's value")
    p.add_argument(
        "--precisions",
        default="",
        help="fp32 and/or bf16 autocast (default: both where the CPU has native bf16, else fp32 only)",
    )
    args = p.parse_args(argv)

    exp = load_experiment(args.config)
    model = exp.model
    if not isinstance(model, GPTConfig):
        raise SystemExit(f"{args.config} is not a gpt preset (model.name = {model.name!r})")
    changes = {
        k: v
        for k, v in (
            ("d_model", args.d_model),
            ("num_heads", args.heads),
            ("num_layers", args.layers),
            ("dropout", args.dropout),
        )
        if v is not None
    }
    batch = args.batch or exp.train.batch_size
    seq_len = args.seq_len or exp.data.seq_len
    cfg = GPTConfig(
        **{
            **vars(model),
            "vocab_size": model.vocab_size or VOCAB,
            "block_size": max(model.block_size, seq_len),
            **changes,
        }
    )
    native = native_bf16(torch.device("cpu"))
    asked = args.precisions or ("fp32,bf16" if native else "fp32")  # emulated bf16 is not worth timing by default
    precisions = [p.strip() for p in asked.split(",") if p.strip()]
    bad = [p for p in precisions if p not in ("fp32", "bf16")]
    if bad:
        raise SystemExit(f"--precisions takes fp32 and/or bf16, got {', '.join(bad)}")
    r = measure(cfg, batch, seq_len, args.repeats, precisions)
    print(f"# seqlab bench gpt: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs\n")
    title = (
        f"GPT training step (forward + backward + AdamW), d_model={cfg.d_model}, heads={cfg.num_heads}, "
        f"layers={cfg.num_layers}, d_ff={cfg.d_ff or 4 * cfg.d_model}, dropout={cfg.dropout}, "
        f"batch={batch}, T={seq_len}, V={cfg.vocab_size}, {r['params']:,} parameters, "
        f"{args.repeats} interleaved rounds (median ms)"
    )
    print(f"{title}\n")
    print("| precision | model | ms / step | tokens / s | / torch |")
    print("|---|---|---|---|---|")
    tokens = batch * seq_len
    for precision in precisions:
        t = r[precision]
        for name, label in (
            ("torch", "torch.nn.TransformerEncoderLayer"),
            ("seqlab", "seqlab gpt, learned positions"),
            ("seqlab rotary", "seqlab gpt, rotary positions"),
        ):
            ratio = t[name] / t["torch"]
            shown = (
                f"**{ratio:.3f}x** (target <= {TARGET:.2f}x)"
                if name == "seqlab"
                else "-"
                if name == "torch"
                else f"{ratio:.3f}x (no torch counterpart)"
            )
            print(f"| {precision} | {label} | {1e3 * t[name]:.2f} | {tokens / t[name]:.0f} | {shown} |")
    print(
        f"\nsame weights, eval-mode loss (fp32): seqlab {r['eval_loss']['seqlab']:.6f}, "
        f"torch {r['eval_loss']['torch']:.6f}"
    )
    if not args.precisions and not native:
        print("bf16 not timed: this CPU has no native bf16 (no AVX-512 or AMX); --precisions fp32,bf16 times it")
    return 0


if __name__ == "__main__":
    sys.exit(main())

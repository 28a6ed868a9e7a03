"""Benchmark: decoding speed and memory, the key/value cache against none, batched beam search against one at a time.

Three tables:

1. GPT, ``--new-tokens`` (256) greedy tokens after a one-token prompt, with the preallocated
   cache and without one (``use_cache=False``: every step re-reads the whole prefix). Sizes from
   the GPT preset; its block_size is raised to hold prompt + new tokens (past block_size every
   step must re-read its window, with or without a cache). Target: >= 5x faster with the cache.
   Both must write the same tokens (checked).
2. Beam search (``--beam`` 5) with the seq2seq Transformer over the fra-eng test set: an
   untrained model of the fra-eng preset's sizes on its test sources (random sources when the
   pairs file is absent), or ``--seq2seq-run RUN_DIR``, a trained run and its test split:
   sentences/s with ``--beam-batch`` sentences per search against one sentence at a time.
   Target: >= 5x faster batched. The first sentences' outputs must agree (checked).
3. Cache memory over a long generation (``--memory-tokens``): the bytes every layer's key/value
   buffers hold at each step, against the preallocated size (equal: no growth), and the storage
   reallocations while decoding (0); beside it, a concatenating ``KVCache`` fed the same steps.

Times are medians of ``--repeats`` interleaved rounds.

    seqlab bench generate                  # or: python benchmarks/generate.py
    seqlab bench generate --seq2seq-run runs/fra-eng-... --beam-batch 64
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

from ..generate import generate
from ..models import GPT, GPTConfig, Seq2SeqTransformer, Seq2SeqTransformerConfig
from ..nn.attention import KVCache
from ..train.config import load_experiment
from .timing import interleaved

PRESET = Path("configs/shakespeare_char_gpt.toml")  # run from the repository root
S2S_PRESET = Path("configs/fra_eng_transformer.toml")  # sizes and data of the beam-search table
VOCAB = 65  # Tiny Shakespeare's characters
TARGETS = {"cache": 5.0, "beam": 5.0}
TINY_GPT = dict(d_model=16, num_heads=2, num_layers=1, block_size=16)
TINY_S2S = dict(d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, d_ff=32)


def gpt_config(args) -> GPTConfig:
    if args.size == "tiny":
        return GPTConfig(vocab_size=VOCAB, dropout=0.0, **TINY_GPT)
    model = load_experiment(args.config).model
    if not isinstance(model, GPTConfig):
        raise SystemExit(f"{args.config} is not a gpt preset (model.name = {model.name!r})")
    return GPTConfig(**{**vars(model), "vocab_size": model.vocab_size or VOCAB, "dropout": 0.0})


# -- 1. cache vs no cache -----------------------------------------------------------------------


def bench_cache(cfg: GPTConfig, new_tokens: int, batch: int, repeats: int, device) -> dict:
    cfg = GPTConfig(**{**vars(cfg), "block_size": max(cfg.block_size, 1 + new_tokens)})
    torch.manual_seed(0)
    model = GPT(cfg).to(device).eval()
    prompt = torch.randint(0, cfg.vocab_size, (batch, 1), generator=torch.Generator().manual_seed(0)).to(device)
    runs = {
        "cache": lambda: generate(model, prompt=prompt, max_new_tokens=new_tokens),
        "no cache": lambda: generate(model, prompt=prompt, max_new_tokens=new_tokens, use_cache=False),
    }
    same = torch.equal(runs["cache"]().sequences, runs["no cache"]().sequences)  # also the warm-up
    t = interleaved(runs, repeats, warmup=0)
    return {
        "cfg": cfg,
        "seconds": t,
        "tok_s": {k: batch * new_tokens / v for k, v in t.items()},
        "ratio": t["no cache"] / t["cache"],
        "same": same,
        "params": sum(p.numel() for p in model.parameters()),
    }


# -- 2. batched beam search vs one sentence at a time -------------------------------------------


def seq2seq_setup(args, device):
    """(model, sources (N, S) right-padded, where they came from)."""
    if args.seq2seq_run:
        from ..data import resolve_locations
        from ..runs import build_run_data, load_run
        from ..train.config import Experiment

        exp, model, _ = load_run(args.seq2seq_run)
        exp = Experiment(exp.model, resolve_locations(exp.data), exp.train)
        test = build_run_data(exp.data, Path(args.seq2seq_run)).test
        return model.to(device).eval(), test.x[: args.sentences], f"{args.seq2seq_run}, its test split"
    cfg, where = Seq2SeqTransformerConfig(), "default sizes"
    if args.size == "tiny":
        cfg, where = Seq2SeqTransformerConfig(**TINY_S2S), "tiny sizes"
    elif Path(args.seq2seq_config).is_file():
        exp = load_experiment(args.seq2seq_config)
        cfg, where = exp.model, f"{args.seq2seq_config} sizes"
        data_file = Path(getattr(exp.data, "path", ""))
        if data_file.is_file():
            from ..data import build_splits

            splits = build_splits(exp.data)
            info, x = splits.info, splits.test.x[: args.sentences]
            cfg = dataclasses.replace(
                cfg,
                dropout=0.0,
                **{k: info[k] for k in ("src_vocab_size", "tgt_vocab_size", "max_src_len", "max_tgt_len")},
            )
            torch.manual_seed(0)
            model = Seq2SeqTransformer(cfg).to(device).eval()
            return model, x, f"the test split of {args.seq2seq_config}'s data ({data_file.name}), untrained model"
    g = torch.Generator().manual_seed(0)
    src_v, tgt_v, S, U = 64, 64, 12, 14
    lengths = torch.randint(2, S + 1, (args.sentences,), generator=g)
    x = torch.randint(4, src_v, (args.sentences, S), generator=g)
    x[torch.arange(S)[None, :] >= lengths[:, None]] = 0
    x[torch.arange(args.sentences), lengths - 1] = 2  # <eos>
    cfg = dataclasses.replace(
        cfg,
        src_vocab_size=src_v,
        tgt_vocab_size=tgt_v,
        max_src_len=S,
        max_tgt_len=U,
        dropout=0.0,
        share_embeddings=False,
    )
    torch.manual_seed(0)
    return Seq2SeqTransformer(cfg).to(device).eval(), x, f"random sources (vocabulary 64), {where}, untrained model"


def bench_beam(model, x: torch.Tensor, beam: int, batch: int, repeats: int, device) -> dict:
    x = x.to(device)
    N = len(x)
    lengths = (x != model.config.pad_id).sum(-1)
    limit = model.config.max_tgt_len - 1
    kw = dict(num_beams=beam, max_new_tokens=limit, length_penalty=0.6)

    def batched():
        return [generate(model, source=x[i : i + batch], **kw) for i in range(0, N, batch)]

    def one_at_a_time():
        return [generate(model, source=x[i : i + 1, : lengths[i]], **kw) for i in range(N)]

    check = min(N, 8)
    a = generate(model, source=x[:check], **kw)
    b = [generate(model, source=x[i : i + 1, : lengths[i]], **kw) for i in range(check)]
    same = all(torch.equal(a.sequences[i, : a.lengths[i]], b[i].sequences[0, : b[i].lengths[0]]) for i in range(check))
    t = interleaved({"batched": batched, "one at a time": one_at_a_time}, repeats, warmup=0)
    return {
        "seconds": t,
        "sent_s": {k: N / v for k, v in t.items()},
        "ratio": t["one at a time"] / t["batched"],
        "same": same,
        "sentences": N,
        "limit": limit,
    }


# -- 3. cache memory ----------------------------------------------------------------------------


def _held_bytes(caches) -> int:
    """Bytes of the distinct storages behind every cache's keys and values."""
    storages = {}
    for c in caches:
        for t in (c.k, c.v):
            if t is not None:
                s = t.untyped_storage()
                storages[s.data_ptr()] = s.nbytes()
    return sum(storages.values())


def bench_memory(cfg: GPTConfig, tokens: int, device) -> dict:
    cfg = GPTConfig(**{**vars(cfg), "block_size": max(cfg.block_size, 1 + tokens)})
    torch.manual_seed(0)
    model = GPT(cfg).to(device).eval()
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
    d_h = cfg.d_model // cfg.num_heads
    prealloc = (
        cfg.num_layers * 2 * 1 * cfg.num_heads * tokens * d_h * 4
    )  # layers x (k, v) x B x H x max_len x d_h x fp32
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    held, reallocations, ptrs = [], 0, None
    with torch.no_grad():
        state, tok = model.begin_decoding(prompt=prompt, max_new_tokens=tokens)
        for _ in range(tokens):
            logits, state, _ = model.decode_step(state, tok)
            tok = logits.argmax(-1)
            now = [c.k.data_ptr() for c in state.caches]
            reallocations += ptrs is not None and now != ptrs
            ptrs = now
            held.append(_held_bytes(state.caches))
    cuda_peak = torch.cuda.max_memory_allocated() - base if device.type == "cuda" else None
    # The same steps through a concatenating cache (one layer's k and v, times the layers): every
    # step allocates a new (1, H, t, d_h) pair and copies the old one into it.
    concat, copied, concat_reallocs = KVCache(), 0, 0
    step = torch.zeros(1, cfg.num_heads, 1, d_h, device=device)
    for _ in range(tokens):
        before = concat.k.data_ptr() if concat.k is not None else None
        if concat.k is not None:
            copied += 2 * concat.k.numel() * 4
        concat.update(step, step)
        concat_reallocs += before is not None and concat.k.data_ptr() != before
    return {
        "tokens": tokens,
        "prealloc": prealloc,
        "held_max": max(held),
        "held_first": held[0],
        "reallocations": reallocations,
        "cuda_peak": cuda_peak,
        "concat_copied": copied * cfg.num_layers,
        "concat_reallocs": concat_reallocs * cfg.num_layers,
        "concat_final": _held_bytes([concat]) * cfg.num_layers,
    }


def _mb(n: float) -> str:
    return f"{n / 2**20:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="seqlab bench generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(PRESET), help=f"GPT preset the sizes come from (default {PRESET})")
    p.add_argument(
        "--size",
        default="preset",
        choices=["preset", "tiny"],
        help="tiny: minute models for a smoke test (no target applies)",
    )
    p.add_argument("--new-tokens", type=int, default=256, help="greedy tokens for the cache table (default 256)")
    p.add_argument("--batch", type=int, default=1, help="prompts decoded together in the cache table (default 1)")
    p.add_argument("--beam", type=int, default=5, help="beam width (default 5)")
    p.add_argument("--beam-batch", type=int, default=64, help="sentences per batched search (default 64)")
    p.add_argument("--sentences", type=int, default=256, help="test sentences decoded (default 256)")
    p.add_argument(
        "--seq2seq-config",
        default=str(S2S_PRESET),
        help=f"seq2seq_transformer preset: model sizes and test sources (default {S2S_PRESET})",
    )
    p.add_argument(
        "--seq2seq-run",
        default=None,
        metavar="RUN_DIR",
        help="a trained seq2seq_transformer run instead (its model and test split)",
    )
    p.add_argument("--memory-tokens", type=int, default=1024, help="steps of the memory table (default 1024)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    for key in ("new_tokens", "batch", "beam", "beam_batch", "sentences", "memory_tokens", "repeats"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    device = torch.device(args.device)
    targets = args.size != "tiny"
    print(
        f"# seqlab bench generate: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, device {device}\n"
    )

    cfg = gpt_config(args)
    c = bench_cache(cfg, args.new_tokens, args.batch, args.repeats, device)
    g = c["cfg"]
    print(
        f"GPT greedy decoding, {args.new_tokens} new tokens after a 1-token prompt, batch {args.batch}, "
        f"d_model={g.d_model}, heads={g.num_heads}, layers={g.num_layers}, positions={g.positions}, "
        f"block_size={g.block_size}, {c['params']:,} parameters, {args.repeats} interleaved rounds (median)\n"
    )
    print("| decoding | seconds | tokens / s |")
    print("|---|---|---|")
    for k in ("cache", "no cache"):
        print(f"| {k} | {c['seconds'][k]:.3f} | {c['tok_s'][k]:.1f} |")
    target = f" (target >= {TARGETS['cache']}x)" if targets else " (tiny size: no target applies)"
    print(f"\ncache speed-up: **{c['ratio']:.2f}x**{target}; same tokens: {'yes' if c['same'] else 'NO'}\n")

    model, x, where = seq2seq_setup(args, device)
    b = bench_beam(model, x, args.beam, args.beam_batch, args.repeats, device)
    m = model.config
    print(
        f"Beam search (beam {args.beam}, length penalty 0.6, up to {b['limit']} tokens), seq2seq_transformer "
        f"d_model={m.d_model}, heads={m.num_heads}, layers={m.num_encoder_layers}+{m.num_decoder_layers}, "
        f"{b['sentences']} sentences of {where}, {args.repeats} interleaved rounds (median)\n"
    )
    print("| decoding | seconds | sentences / s |")
    print("|---|---|---|")
    print(
        f"| batched ({args.beam_batch} sentences x {args.beam} beams per forward) | {b['seconds']['batched']:.3f} "
        f"| {b['sent_s']['batched']:.1f} |"
    )
    print(
        f"| one sentence at a time ({args.beam} beams per forward) | {b['seconds']['one at a time']:.3f} "
        f"| {b['sent_s']['one at a time']:.1f} |"
    )
    target = f" (target >= {TARGETS['beam']}x)" if targets else " (tiny size: no target applies)"
    print(f"\nbatched speed-up: **{b['ratio']:.2f}x**{target}; same outputs: {'yes' if b['same'] else 'NO'}\n")

    r = bench_memory(cfg, args.memory_tokens, device)
    print(f"Key/value cache memory, GPT as above, batch 1, {r['tokens']} greedy steps\n")
    print("| cache | preallocated MiB | held MiB (max over steps) | reallocations | MiB copied |")
    print("|---|---|---|---|---|")
    print(f"| preallocated (seqlab) | {_mb(r['prealloc'])} | {_mb(r['held_max'])} | {r['reallocations']} | 0 |")
    print(
        f"| concatenating (KVCache without max_len) | - | {_mb(r['concat_final'])} | {r['concat_reallocs']} "
        f"| {_mb(r['concat_copied'])} |"
    )
    equal = r["held_max"] == r["prealloc"] == r["held_first"]
    print(f"\ncache held == preallocated at every step: {'yes' if equal else 'NO'}")
    if r["cuda_peak"] is not None:
        print(f"CUDA peak allocation while decoding (weights excluded): {_mb(r['cuda_peak'])} MiB")
    return 0 if (c["same"] and b["same"] and equal) else 1


if __name__ == "__main__":
    sys.exit(main())

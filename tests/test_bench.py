"""seqlab bench attention, at the tiniest sizes: it runs through the CLI and prints its three tables."""

import math
import re

from seqlab.cli import main


def _rows(text: str, title: str) -> list[list[str]]:
    """The cells of the body rows of the markdown table that follows the line starting with ``title``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    table = []
    for line in lines[start + 2 :]:  # the title, then a blank line
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split("|")])
    assert re.fullmatch(r"(---\|?)+", "|".join(table[1])), table[1]  # the rule under the header
    return table[2:]


def test_bench_attention_smoke(capsys):
    argv = [
        "bench",
        "attention",
        "--repeats",
        "1",
        "--batch",
        "1",
        "--heads",
        "1",
        "--seq-len",
        "4",
        "--head-dim",
        "2",
        "--lengths",
        "8",
        "--scaling-batch",
        "1",
        "--scaling-width",
        "4",
        "--scaling-heads",
        "1",
        "--scaling-repeats",
        "1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("# seqlab bench attention: torch ")
    number = r"\d+\.\d+"
    sdpa = _rows(out, "SDPA forward, B=1, heads=1, T=4, d=2, 1 interleaved rounds (median ms)")
    mha = _rows(out, "MultiHeadAttention forward + backward, B=1, T=4, d_model=2, heads=1, 3 interleaved rounds")
    for rows, target in ((sdpa, "1.05"), (mha, "1.1")):
        assert [r[0] for r in rows] == ["full", "causal"]
        for r in rows:
            assert len(r) == 6 and all(re.fullmatch(number, c) for c in (r[1], r[2], r[4]))
            assert re.fullmatch(rf"\*\*{number}x\*\* \(target <= {re.escape(target)}x\)", r[3])
    scaling = _rows(out, "Scaling, one forward + backward, B=1, width 4")
    assert [r[0] for r in scaling] == ["8"]  # one row per length, each point in a fresh process
    assert all(len(r) == 7 and all(re.fullmatch(number, c) for c in r[1:]) for r in scaling)


def test_bench_generate_smoke(capsys):
    argv = [
        "bench",
        "generate",
        "--size",
        "tiny",
        "--new-tokens",
        "6",
        "--sentences",
        "3",
        "--beam",
        "2",
        "--beam-batch",
        "2",
        "--memory-tokens",
        "12",
        "--repeats",
        "1",
    ]
    assert main(argv) == 0  # 0: same tokens with and without the cache, same beams, cache held == preallocated
    out = capsys.readouterr().out
    assert out.startswith("# seqlab bench generate: torch ")
    number = r"\d+\.\d+"
    cache = _rows(out, "GPT greedy decoding, 6 new tokens")
    assert [r[0] for r in cache] == ["cache", "no cache"]
    assert all(re.fullmatch(number, c) and float(c) > 0 for r in cache for c in r[1:])
    assert re.search(rf"cache speed-up: \*\*{number}x\*\* \(tiny size: no target applies\); same tokens: yes", out)
    beam = _rows(out, "Beam search (beam 2")
    assert [r[0].split(" (")[0] for r in beam] == ["batched", "one sentence at a time"]
    assert all(re.fullmatch(number, c) and float(c) > 0 for r in beam for c in r[1:])
    assert re.search(rf"batched speed-up: \*\*{number}x\*\* .*same outputs: yes", out)
    memory = _rows(out, "Key/value cache memory")
    # 1 layer x (k, v) x B=1 x 2 heads x 12 steps x d_h=8 x 4 bytes = 1536 bytes
    assert memory[0] == ["preallocated (seqlab)", "0.001", "0.001", "0", "0"]
    assert memory[1][3] == "11"  # a concatenating cache reallocates at every step after the first
    assert "cache held == preallocated at every step: yes" in out


def test_bench_gpt_smoke(capsys, configs_dir):
    argv = [
        "bench",
        "gpt",
        "--config",
        str(configs_dir / "shakespeare_char_gpt.toml"),
        "--repeats",
        "1",
        "--batch",
        "2",
        "--seq-len",
        "8",
        "--d-model",
        "16",
        "--heads",
        "2",
        "--layers",
        "1",
    ]
    assert main([*argv, "--precisions", "fp32,bf16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# seqlab bench gpt: torch ")
    number = r"\d+\.\d+"
    rows = _rows(out, "GPT training step (forward + backward + AdamW), d_model=16, heads=2, layers=1")
    assert [r[:2] for r in rows] == [
        [p, m]
        for p in ("fp32", "bf16")
        for m in ("torch.nn.TransformerEncoderLayer", "seqlab gpt, learned positions", "seqlab gpt, rotary positions")
    ]
    for r in rows:
        assert re.fullmatch(number, r[2]) and float(r[2]) > 0 and re.fullmatch(r"\d+", r[3])
    for r in rows[1::3]:  # seqlab / torch, a finite ratio with its target (timing is not asserted)
        ratio = re.fullmatch(rf"\*\*({number})x\*\* \(target <= 1\.10x\)", r[4])
        assert ratio and math.isfinite(float(ratio.group(1)))
    losses = re.search(rf"eval-mode loss \(fp32\): seqlab ({number}), torch ({number})", out)
    assert losses and abs(float(losses.group(1)) - float(losses.group(2))) < 1e-5  # the same weights


def test_bench_gpt_times_bf16_by_default_only_where_native(capsys, configs_dir, monkeypatch):
    import seqlab.bench.gpt as bench_gpt

    monkeypatch.setattr(bench_gpt, "native_bf16", lambda device: False)
    argv = ["bench", "gpt", "--config", str(configs_dir / "shakespeare_char_gpt.toml"), "--repeats", "1"]
    assert main([*argv, "--batch", "2", "--seq-len", "8", "--d-model", "16", "--heads", "2", "--layers", "1"]) == 0
    out = capsys.readouterr().out
    assert "bf16 not timed: this CPU has no native bf16" in out
    rows = _rows(out, "GPT training step (forward + backward + AdamW), d_model=16, heads=2, layers=1")
    assert [r[0] for r in rows] == ["fp32"] * 3

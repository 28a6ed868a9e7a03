"""torchrun with 2 CPU processes over gloo takes the same steps as one process on the global batch."""

import json
import subprocess
import sys

import torch

from seqlab.cli import main

# Batch 128 over 1,259 training images: 9 full batches and one of 107 rows (54 + 53 per process),
# so the run crosses an epoch boundary through an uneven last batch.
ARGS = ["--train.max_steps=12", "--train.batch_size=128", "--train.eval_every=5", "--train.log_every=1",
        "--model.hidden_size=16", "--train.tensorboard=false", "--train.device=cpu"]


def test_two_processes_equal_one(tmp_path, configs_dir):
    config = str(configs_dir / "digits_lstm.toml")
    assert main(["train", config, *ARGS, "--out", str(tmp_path / "one"), "--quiet"]) == 0
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "seqlab", "train", config, *ARGS, "--out", str(tmp_path / "two"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (one,) = (tmp_path / "one").iterdir()
    (two,) = (tmp_path / "two").iterdir()  # rank 0 alone made a run directory
    a = torch.load(one / "checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(two / "checkpoints/last.pt", weights_only=True)["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=0), k
    loss = lambda run: [r["train/loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())  # noqa: E731
                        if "train/loss" in r]
    # The logged loss is the global batch's (summed over both processes), step by step.
    assert len(loss(two)) == 12
    assert max(abs(x - y) for x, y in zip(loss(one), loss(two))) <= 1e-5
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["processes"] == 2 and s1["processes"] == 1
    assert abs(s1["test/loss"] - s2["test/loss"]) <= 1e-5

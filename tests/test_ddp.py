"""torchrun with 2 CPU processes over gloo: the same steps as one process on the global batch, and one
report (rank 0's) when the loss goes non-finite.

Every multi-process run here has a deadline. Past it the processes' Python stacks are dumped
(faulthandler, SIGABRT), every process of the run is killed (torchrun starts its workers in sessions
of their own, so killing torchrun alone would leave them waiting in a collective), and the test
fails with everything they printed. Each run also avoids what can stall a rendezvous: torchrun's
store is bound to a free port before its number is handed out (--standalone; the workers reuse it),
and the store and gloo talk over the loopback address instead of a looked-up host name.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seqlab.cli import main

# Batch 128 over 1,259 training images: 9 full batches and one of 107 rows (54 + 53 per process),
# so the run crosses an epoch boundary through an uneven last batch.
ARGS = [
    "--train.max_steps=12",
    "--train.batch_size=128",
    "--train.eval_every=5",
    "--train.log_every=1",
    "--model.hidden_size=16",
    "--train.tensorboard=false",
    "--train.device=cpu",
]

DEADLINE_S = 180  # a 2-process run takes 10-30 s on a loaded 2-core machine


def _loopback_interface() -> str | None:
    names = {name for _, name in socket.if_nameindex()} if hasattr(socket, "if_nameindex") else set()
    return next((name for name in ("lo", "lo0") if name in names), None)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; elsewhere none are found)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(pids, signum) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def run_with_deadline(
    cmd: list[str], log: Path, timeout: float = DEADLINE_S, env: dict | None = None
) -> tuple[int, str]:
    """Run ``cmd`` with its output in ``log``; (exit status, output), or fail the test after ``timeout`` s."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return proc.wait(timeout=timeout), log.read_text()
        except subprocess.TimeoutExpired:
            below = _descendants(proc.pid)
            _signal_all([proc.pid, *below], signal.SIGABRT)  # faulthandler prints where each one is stuck
            time.sleep(1)
            _signal_all([*below, *_descendants(proc.pid)], signal.SIGKILL)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    pytest.fail(f"{' '.join(cmd[:6])} ... did not finish within {timeout} s; its output:\n{log.read_text()[-12000:]}")


def torchrun(tmp_path: Path, *args: str, name: str = "torchrun", script: Path | None = None) -> tuple[int, str]:
    """``torchrun --standalone --nproc_per_node=2 -m seqlab ARGS`` (or ``SCRIPT ARGS``) under a deadline:
    (exit status, output)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "--local-addr=127.0.0.1",
        *(["-m", "seqlab"] if script is None else [str(script)]),
        *args,
    ]
    env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "0"}  # workers use the agent's store: no port is chosen twice
    loopback = _loopback_interface()
    if loopback:
        env["GLOO_SOCKET_IFNAME"] = loopback  # no host-name lookup for gloo's address
    return run_with_deadline(cmd, tmp_path / f"{name}.log", env=env)


def test_a_run_past_its_deadline_fails_with_its_output_and_leaves_nothing_behind(tmp_path):
    """The deadline itself: a child in a session of its own (as torchrun's workers are) is killed too."""
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        "print('waiting with child', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(pytest.fail.Exception) as failure:
        run_with_deadline([sys.executable, "-c", script], tmp_path / "hang.log", timeout=3)
    message = str(failure.value)
    assert "did not finish within 3 s" in message and "waiting with child" in message
    assert "Current thread" in message  # faulthandler's dump of where it waited
    if Path("/proc").is_dir():
        child = int(message.split("waiting with child ")[1].split()[0])

        def gone() -> bool:  # exited, or killed and not yet reaped by its new parent
            try:
                return Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
            except OSError:
                return True

        deadline = time.time() + 10
        while not gone() and time.time() < deadline:
            time.sleep(0.1)
        assert gone()


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path, configs_dir):
    config = str(configs_dir / "digits_lstm.toml")
    assert main(["train", config, *ARGS, "--out", str(tmp_path / "one"), "--quiet"]) == 0
    rc, output = torchrun(tmp_path, "train", config, *ARGS, "--out", str(tmp_path / "two"), "--quiet")
    assert rc == 0, output[-6000:]
    (one,) = (tmp_path / "one").iterdir()
    (two,) = (tmp_path / "two").iterdir()  # rank 0 alone made a run directory
    a = torch.load(one / "checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(two / "checkpoints/last.pt", weights_only=True)["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=0), k

    def loss(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r]

    # The logged loss is the global batch's (summed over both processes), step by step.
    assert len(loss(two)) == 12
    assert max(abs(x - y) for x, y in zip(loss(one), loss(two))) <= 1e-5
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["processes"] == 2 and s1["processes"] == 1
    assert abs(s1["test/loss"] - s2["test/loss"]) <= 1e-5


@pytest.mark.slow
def test_non_finite_loss_is_reported_once_by_rank_0(tmp_path, configs_dir):
    """An absurd learning rate overflows the weights at step 2; rank 0, which wrote step 1's checkpoint, says so."""
    out = tmp_path / "runs"
    rc, output = torchrun(
        tmp_path,
        "train",
        str(configs_dir / "digits_lstm.toml"),
        *ARGS,
        "--train.lr=3e37",
        "--train.grad_clip=0",
        "--train.warmup_steps=0",
        "--train.checkpoint_every=1",
        "--out",
        str(out),
        "--quiet",
    )
    assert rc == 1, output[-6000:]
    (run,) = out.iterdir()
    reports = [line for line in output.splitlines() if "non-finite" in line]
    assert reports == [
        "seqlab train: failed: the loss or gradient became non-finite at step 2; stopped at step 2; the last good "
        f"checkpoint, {run / 'checkpoints' / 'last.pt'} (step 1), was kept. Try a lower train.lr, train.grad_clip, "
        "or train.precision=fp32"
    ], output[-6000:]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 1


SHUTDOWN_PROBE = """\
import gc, sys
from torch.nn.parallel import DistributedDataParallel
import seqlab.runs.train as runs_train
from seqlab.cli import main

def shutdown(wait=True):
    alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    print(f"DDP wrappers alive at shutdown: {alive}", flush=True)
    return SHUTDOWN(wait)

SHUTDOWN, runs_train.shutdown = runs_train.shutdown, shutdown
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_the_ddp_wrapper_is_let_go_before_the_group_is_torn_down(tmp_path, configs_dir):
    """A DDP wrapper outliving its process group is destroyed when the trainer goes, after a peer may have
    exited: CI once saw rank 1 hang there. Each process must have let go of it before shutting down."""
    probe = tmp_path / "probe.py"
    probe.write_text(SHUTDOWN_PROBE)
    config = str(configs_dir / "digits_lstm.toml")
    rc, output = torchrun(tmp_path, "train", config, *ARGS, "--out", str(tmp_path / "runs"), "--quiet", script=probe)
    assert rc == 0, output[-6000:]
    reports = [line for line in output.splitlines() if line.startswith("DDP wrappers alive")]
    assert reports == ["DDP wrappers alive at shutdown: 0"] * 2, output[-6000:]


@pytest.mark.slow
def test_a_resumed_two_process_run_with_dropout_continues_each_processs_random_stream(tmp_path, configs_dir):
    """ViT with dropout 0.1: 12 steps straight, and 6 steps then a resume to 12, give the same weights.
    Each process draws its own dropout masks (seed + rank) and the checkpoint keeps every process's RNG
    state: restoring rank 0's in both would change rank 1's masks after the resume."""
    vit = str(configs_dir / "digits_vit.toml")
    args = [
        "--train.batch_size=64",
        "--train.schedule=constant",
        "--train.warmup_steps=0",
        "--train.eval_every=0",
        "--train.tensorboard=false",
        "--train.device=cpu",
        "--model.depth=1",
        "--quiet",
    ]
    rc, output = torchrun(tmp_path, "train", vit, *args, "--train.max_steps=12", "--out", str(tmp_path / "a"), name="a")
    assert rc == 0, output[-6000:]
    rc, output = torchrun(tmp_path, "train", vit, *args, "--train.max_steps=6", "--out", str(tmp_path / "b"), name="b")
    assert rc == 0, output[-6000:]
    (straight,), (resumed,) = (tmp_path / "a").iterdir(), (tmp_path / "b").iterdir()
    ckpt = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert len(ckpt["rng_ranks"]) == 2 and not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])
    rc, output = torchrun(tmp_path, "train", "--resume", str(resumed), "--train.max_steps=12", "--quiet", name="resume")
    assert rc == 0, output[-6000:]
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k

"""The training loop. It knows the model only as ``model(x, y) -> (output, loss)``.

Recurrent stream models (truncated BPTT) are called as ``model(x, y, state=state)`` and return
``(output, loss, state)``. Everything else a run needs (where files go, what is printed) is passed
in; the loop itself never looks inside the model.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..nn import detach_state
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .distributed import DistInfo, shard


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("train.device=mps but MPS is not available; use train.device=cpu or auto")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def batches(dataset: Dataset, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
            skip: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
    """Mini-batches ``(x, y)``; the first ``skip`` are passed over (resuming mid-epoch).

    In-memory datasets (with ``.tensors``) are sliced with one shuffled index: no per-sample Python.
    """
    tensors = getattr(dataset, "tensors", None)
    if tensors is None:
        for i, batch in enumerate(DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)):
            if i >= skip:
                yield tuple(batch)
        return
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(skip * batch_size, n, batch_size):
        idx = order[start:start + batch_size]
        yield tuple(t[idx] for t in tensors)


def task_metrics(task: str, output: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sums (not means) of the task's metrics over a batch, so they pool over a dataset."""
    if task == "classification":
        return {"accuracy": (output.argmax(-1) == y).sum()}
    return {}


def default_metric(task: str) -> tuple[str, str]:
    """The validation metric that picks best.pt, and whether higher ("max") or lower is better."""
    return ("accuracy", "max") if task == "classification" else ("loss", "min")


def _call(model, x, y, state=None, stream: bool = False):
    """(output, loss, state) for stream models, (output, loss, None) for the rest."""
    if stream:
        return model(x, y, state=state)
    output, loss = model(x, y)[:2]
    return output, loss, None


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, *, task: str, batch_size: int = 256,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean loss and task metrics over ``dataset`` in eval mode (train mode is restored after).

    The mean is per example (for sequence targets, per example of the per-token mean loss).
    """
    was_training = model.training
    model.eval()
    totals: dict[str, torch.Tensor] = {}
    n = 0
    for x, y in batches(dataset, batch_size, shuffle=False):
        x, y = x.to(device), y.to(device)
        output, loss, _ = _call(model, x, y)
        for k, v in {"loss": loss.detach() * len(x), **task_metrics(task, output, y)}.items():
            totals[k] = totals.get(k, 0) + v.float()
        n += len(x)
    model.train(was_training)
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return {k: (v / n).item() for k, v in totals.items()}


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier of ``train.lr`` at optimiser step ``step`` (0-based)."""
    warm = cfg.warmup_steps
    if cfg.schedule == "noam":
        # "Attention Is All You Need", eq. 3: d^-0.5 min(s^-0.5, s w^-1.5), scaled so the peak
        # (at s = w) is train.lr instead of depending on d_model.
        s, w = step + 1, max(warm, 1)
        return min(s ** -0.5, s * w ** -1.5) * w ** 0.5
    if warm and step < warm:
        return (step + 1) / warm
    if cfg.schedule == "cosine":
        progress = (step - warm) / max(total_steps - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain values (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    """One JSON object per logged step or evaluation in ``metrics.jsonl``, mirrored to TensorBoard."""

    def __init__(self, run_dir: Path | None, tensorboard: bool = True):
        self._fh = (run_dir / "metrics.jsonl").open("a") if run_dir else None
        self._tb = None
        if run_dir and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, step: int, values: dict[str, Any]) -> None:
        if self._fh:
            self._fh.write(json.dumps({"step": step, **values}) + "\n")
            self._fh.flush()
        if self._tb:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None
        if self._tb:
            self._tb.close()
            self._tb = None


class Progress:
    """A tqdm bar on a terminal; about 20 plain lines per run when output is a file or a CI log."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled, self.total, self.printed = enabled, total, start
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, file=self.stream, dynamic_ncols=True, desc="train")

    def update(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        elif step - self.printed >= self.total / 20 or step == self.total:
            self.printed = step
            text = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"step {step}/{self.total}  {text}", file=self.stream, flush=True)

    def write(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; the trainer saved ``checkpoint`` at ``step`` and stopped."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"{signal.Signals(signum).name} at step {step}")


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


@contextlib.contextmanager
def _catch_signals(flag: dict[str, int | None]):
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if flag["signum"] is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        flag["signum"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Trainer:
    """Runs the optimisation loop; saves and restores everything a run needs to continue exactly.

    Callbacks (minGPT style): ``trainer.add_callback("on_step_end", fn)`` calls ``fn(trainer)``
    after every optimiser step (after any checkpoint of that step was written).
    """

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, *,
                 task: str, run_dir: str | Path | None = None, progress: bool = True,
                 checkpoint_extra: Callable[[], dict[str, Any]] | None = None, dist_info: DistInfo = DistInfo(),
                 device: torch.device | None = None):
        self.cfg, self.task, self.dist = cfg, task, dist_info
        self.device = device or resolve_device(cfg.device, dist_info.local_rank)
        self.model = model.to(self.device)
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir) if run_dir and dist_info.is_main else None
        self.show_progress = progress and dist_info.is_main
        self.checkpoint_extra = checkpoint_extra or dict
        self.stream = cfg.tbptt_steps > 0
        if self.stream and not hasattr(train_set, "streams"):
            raise ValueError(f"train.tbptt_steps={cfg.tbptt_steps} needs a stream dataset (a language-model "
                             f"dataset such as char_lm); this one has no .streams(); set train.tbptt_steps=0")
        if cfg.batch_size % dist_info.world_size:
            raise ValueError(f"train.batch_size={cfg.batch_size} must be divisible by the number of processes "
                             f"({dist_info.world_size}): it is the global batch, split evenly across them")
        self.net = self.model
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.optimizer = build_optimizer(self.model, cfg)
        self.batches_per_epoch = self._batches_per_epoch()
        steps_per_epoch = max(self.batches_per_epoch // cfg.grad_accum, 1)
        self.total_steps = cfg.max_steps if cfg.max_steps else cfg.epochs * steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(cfg, s, self.total_steps))
        if cfg.metric:
            self.metric, self.mode = cfg.metric, ("min" if cfg.metric == "loss" else "max")
        else:
            self.metric, self.mode = default_metric(task)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of the current epoch already consumed
        self.stream_state = None  # the recurrent state carried between TBPTT chunks
        self.window = _Window()
        self.best: float | None = None
        self.bad_evals = 0
        self.last_checkpoint: tuple[int, Path] | None = None
        self.callbacks: dict[str, list[Callable[[Trainer], None]]] = {}

    def add_callback(self, event: str, fn: Callable[["Trainer"], None]) -> None:
        self.callbacks.setdefault(event, []).append(fn)

    def _batches_per_epoch(self) -> int:
        if self.stream:
            return len(self.train_set.streams(self.cfg.batch_size, self.cfg.tbptt_steps))
        return math.ceil(len(self.train_set) / self.cfg.batch_size)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "position": {"epoch": self.epoch, "batch": self.batch_in_epoch, "stream_state": self.stream_state},
            "best": self.best,
            "bad_evals": self.bad_evals,
            "rng": rng_state(),
            **self.checkpoint_extra(),
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint: weights, optimiser, schedule, data position and RNGs."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step = ckpt["step"]
        pos = ckpt["position"]
        self.epoch, self.batch_in_epoch = pos["epoch"], pos["batch"]
        self.stream_state = pos.get("stream_state")
        self.best, self.bad_evals = ckpt["best"], ckpt.get("bad_evals", 0)
        set_rng_state(ckpt["rng"])

    def save(self, name: str) -> Path | None:
        """Write checkpoints/NAME, unless the loss went non-finite since the last check (then raise)."""
        self._check_finite()
        if self.run_dir is None:
            return None
        path = save_checkpoint(self.run_dir / "checkpoints" / name, self.state_dict())
        if name == "last.pt":
            self.last_checkpoint = (self.step, path)
        return path

    # -- evaluation ----------------------------------------------------------------------------
    def _improved(self, value: float) -> bool:
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def validate(self, log: MetricsLog) -> dict[str, float]:
        metrics = evaluate(self.model, self.val_set, task=self.task, batch_size=max(self.cfg.batch_size, 256),
                           device=self.device)
        if self.metric not in metrics:
            raise ValueError(f"train.metric={self.metric!r} is not measured for task {self.task!r}; "
                             f"choose one of {', '.join(metrics)}")
        record = {f"val/{k}": v for k, v in metrics.items()}
        log.log(self.step, record)
        if self._improved(metrics[self.metric]):
            self.best, self.bad_evals = metrics[self.metric], 0
            self.save("best.pt")
        else:
            self.bad_evals += 1
        return record

    # -- the loop ------------------------------------------------------------------------------
    def _epoch_batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """This epoch's batches from the saved position, whole (global) batches before sharding."""
        if self.stream:
            chunks = self.train_set.streams(self.cfg.batch_size, self.cfg.tbptt_steps)
            for i in range(self.batch_in_epoch, len(chunks)):
                yield chunks[i]
            return
        # Each epoch's order depends only on (seed, epoch), so a resumed run can redraw it.
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.epoch)
        yield from batches(self.train_set, self.cfg.batch_size, shuffle=True, generator=g, skip=self.batch_in_epoch)

    def _layer_grad_norms(self) -> dict[str, float]:
        return {f"grad_norm/{name}": p.grad.norm().item() for name, p in self.model.named_parameters()
                if p.grad is not None}

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        log = MetricsLog(self.run_dir, cfg.tensorboard)
        progress = Progress(self.total_steps, self.step, self.show_progress)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
        flag: dict[str, int | None] = {"signum": None}
        self.model.train()
        start = time.perf_counter()
        self.window.reset()
        micro = 0
        stopped_early = False
        with _catch_signals(flag):
            while self.step < self.total_steps and not stopped_early:
                for batch in self._epoch_batches():
                    x, y = (t.to(self.device) for t in shard(batch, self.dist))
                    with autocast:
                        output, loss, state = _call(self.net, x, y, self.stream_state, self.stream)
                    if self.stream:
                        self.stream_state = detach_state(state)  # truncated BPTT: no gradient past this chunk
                    (loss / cfg.grad_accum).backward()
                    self.batch_in_epoch += 1
                    micro += 1
                    self.window.add(self.step + 1, loss, x, output if self.task == "classification" else None, y)
                    if micro % cfg.grad_accum:
                        continue
                    if cfg.layer_norms_every and (self.step + 1) % cfg.layer_norms_every == 0:
                        log.log(self.step + 1, self._layer_grad_norms())  # before clipping
                    clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    lr = self.scheduler.get_last_lr()[0]
                    self.scheduler.step()
                    self.step += 1
                    last = self.step >= self.total_steps
                    checkpoint_now = cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0
                    evaluate_now = self.val_set is not None and cfg.eval_every and (self.step % cfg.eval_every == 0 or last)
                    if self.step % cfg.log_every == 0 or last or checkpoint_now or evaluate_now or flag["signum"]:
                        self._check_finite()
                        self._log_window(log, progress, lr, grad_norm)
                    if evaluate_now:
                        record = self.validate(log)
                        progress.write(f"step {self.step}: " + "  ".join(f"{k} {v:.4f}" for k, v in record.items()))
                        if cfg.early_stopping_patience and self.bad_evals >= cfg.early_stopping_patience:
                            progress.write(f"early stopping at step {self.step}: val/{self.metric} has not improved "
                                           f"for {self.bad_evals} evaluations (best {self.best:.4f})")
                            stopped_early = True
                    if checkpoint_now:
                        self.save("last.pt")
                    for fn in self.callbacks.get("on_step_end", []):
                        fn(self)
                    if flag["signum"] is not None:
                        path = self.save("last.pt")
                        progress.close()
                        log.close()
                        raise TrainingInterrupted(flag["signum"], self.step, path)
                    if last or stopped_early:
                        break
                else:  # the epoch ran out
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    self.stream_state = None  # each pass over the streams starts from a zero state
                    if self.val_set is not None and not cfg.eval_every:
                        self.validate(log)
        progress.close()
        self.save("last.pt")
        log.close()
        return {"steps": self.step, "seconds": time.perf_counter() - start, "stopped_early": stopped_early,
                f"best_val/{self.metric}": self.best}

    def _check_finite(self) -> None:
        bad = self.window.first_non_finite_step()  # one sync, only at log and checkpoint steps
        if bad is None:
            return
        if self.last_checkpoint:
            step, path = self.last_checkpoint
            kept = f"the last good checkpoint, {path} (step {step}), was kept"
        else:
            kept = "no checkpoint had been written yet"
        raise NonFiniteLoss(f"the loss became non-finite at step {bad}; stopped at step {self.step}; {kept}. "
                            f"Try a lower train.lr, train.grad_clip, or train.precision=fp32")

    def _log_window(self, log: MetricsLog, progress: Progress, lr: float, grad_norm) -> None:
        loss_sum, correct, n = self.window.sums(self.task)
        if self.dist.enabled:  # log the global batch's loss and accuracy, not this process's share
            import torch.distributed as dist

            sums = torch.stack([loss_sum, correct, torch.tensor(float(n), device=loss_sum.device)])
            dist.all_reduce(sums)
            loss_sum, correct, n = sums[0], sums[1], int(sums[2])
        n = max(n, 1)
        elapsed = max(time.perf_counter() - self.window.t, 1e-9)
        record = {"train/loss": (loss_sum / n).item(), "train/lr": lr, "train/grad_norm": float(grad_norm),
                  "train/samples_per_s": self.window.n / elapsed, "train/tokens_per_s": self.window.tokens / elapsed}
        if self.task == "classification":
            record["train/accuracy"] = (correct / n).item()
        log.log(self.step, record)
        shown = {"loss": record["train/loss"]}
        if "train/accuracy" in record:
            shown["acc"] = record["train/accuracy"]
        shown["samples/s"] = record["train/samples_per_s"]
        progress.update(self.step, shown)
        self.window.reset()


class _Window:
    """What happened since the last log line, kept as tensors so the hot loop never waits on them.

    Per micro-batch it only appends references (the loss, and a classifier's logits and targets);
    ``sums`` and ``first_non_finite_step`` reduce them once per log line.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.steps: list[int] = []
        self.sizes: list[int] = []
        self.outputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.n = self.tokens = 0
        self.t = time.perf_counter()

    def add(self, step: int, loss: torch.Tensor, x: torch.Tensor, output: torch.Tensor | None, y: torch.Tensor) -> None:
        self.losses.append(loss.detach())
        self.steps.append(step)
        self.sizes.append(len(x))
        if output is not None:
            self.outputs.append(output.detach())
            self.targets.append(y)
        self.n += len(x)
        # Tokens are time steps: (B, T) ids or (B, T, C) features; a (B, C) float batch has none.
        self.tokens += x.shape[0] * (x.shape[1] if x.dim() >= 3 or not x.is_floating_point() else 1)

    def first_non_finite_step(self) -> int | None:
        if not self.losses:
            return None
        finite = torch.isfinite(torch.stack(self.losses).float())
        if bool(finite.all()):
            return None
        return self.steps[int((~finite).nonzero()[0])]

    def sums(self, task: str) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(sum of per-example losses, number correct (classification), examples)."""
        losses = torch.stack(self.losses).float()  # (micro-batches,)
        sizes = torch.tensor(self.sizes, dtype=losses.dtype, device=losses.device)
        correct = torch.zeros((), device=losses.device)
        if self.outputs:
            correct = task_metrics(task, torch.cat(self.outputs), torch.cat(self.targets))["accuracy"].float()
        return (losses * sizes).sum(), correct, self.n

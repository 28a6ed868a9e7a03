"""The training loop. It knows the model only as ``model(x, y) -> (output, loss)``.

Everything else a run needs (where files go, what is printed) is passed in: a ``MetricsLog`` for
numbers and a progress reporter for the terminal.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .checkpoint import save_checkpoint
from .config import TrainConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("train.device=mps but MPS is not available; use train.device=cpu or auto")
    return torch.device(name)


def batches(dataset: Dataset, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches ``(x, y)``. In-memory datasets (with ``.tensors``) are sliced, not collated per sample."""
    tensors = getattr(dataset, "tensors", None)
    if tensors is None:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
        return
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield tuple(t[idx] for t in tensors)


def task_metrics(task: str, output: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sums (not means) of the task's metrics over a batch, so they can be pooled over a dataset."""
    if task == "classification":
        return {"accuracy": (output.argmax(-1) == y).sum()}
    return {}


def default_metric(task: str) -> tuple[str, str]:
    """The validation metric that picks best.pt, and whether higher is better ("max") or not."""
    return ("accuracy", "max") if task == "classification" else ("loss", "min")


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, *, task: str, batch_size: int = 256,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean loss and task metrics over ``dataset`` in eval mode (train mode is restored)."""
    was_training = model.training
    model.eval()
    totals: dict[str, torch.Tensor] = {}
    n = 0
    for x, y in batches(dataset, batch_size, shuffle=False):
        x, y = x.to(device), y.to(device)
        output, loss = model(x, y)
        parts = {"loss": loss.detach() * len(x), **task_metrics(task, output, y)}
        for k, v in parts.items():
            totals[k] = totals.get(k, 0) + v.float()
        n += len(x)
    model.train(was_training)
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
        # "Attention Is All You Need", eq. 3, normalised so the peak (at step = warmup) is train.lr.
        s, w = step + 1, max(warm, 1)
        return min(s ** -0.5, s * w ** -1.5) * w ** 0.5
    if warm and step < warm:
        return (step + 1) / warm
    if cfg.schedule == "cosine":
        progress = (step - warm) / max(total_steps - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


class MetricsLog:
    """Appends one JSON object per logged step or evaluation to ``metrics.jsonl``."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._fh = self.path.open("a") if self.path else None

    def log(self, step: int, values: dict[str, Any]) -> None:
        if self._fh:
            self._fh.write(json.dumps({"step": step, **values}) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None


class Progress:
    """A tqdm bar on a terminal; plain lines (one per log interval) when output is a file or CI log."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=self.stream, dynamic_ncols=True, desc="train")
        self.total = total
        self.printed = 0

    def update(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in values.items()}, refresh=True)
        elif step - self.printed >= self.total / 20 or step == self.total:  # about 20 lines per run
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


class Trainer:
    """Runs the optimisation loop over a model and an in-memory (or any) training set."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, *,
                 task: str, run_dir: str | Path | None = None, progress: bool = True,
                 checkpoint_extra: Callable[[], dict[str, Any]] | None = None):
        self.cfg = cfg
        self.task = task
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir) if run_dir else None
        self.log = MetricsLog(self.run_dir / "metrics.jsonl" if self.run_dir else None)
        self.show_progress = progress
        self.checkpoint_extra = checkpoint_extra or dict
        self.optimizer = build_optimizer(self.model, cfg)
        steps_per_epoch = math.ceil(len(train_set) / (cfg.batch_size * cfg.grad_accum))
        self.total_steps = cfg.max_steps if cfg.max_steps else cfg.epochs * steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(cfg, s, self.total_steps))
        self.metric, self.mode = (cfg.metric, "min" if cfg.metric == "loss" else "max") if cfg.metric \
            else default_metric(task)
        self.step = 0
        self.best: float | None = None
        self.history: list[dict[str, float]] = []

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best": self.best,
            **self.checkpoint_extra(),
        }

    def save(self, name: str) -> Path | None:
        if self.run_dir is None:
            return None
        return save_checkpoint(self.run_dir / "checkpoints" / name, self.state())

    # -- the loop ------------------------------------------------------------------------------
    def _improved(self, value: float) -> bool:
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def validate(self) -> dict[str, float]:
        metrics = evaluate(self.model, self.val_set, task=self.task, batch_size=max(self.cfg.batch_size, 256),
                           device=self.device)
        record = {f"val/{k}": v for k, v in metrics.items()}
        self.log.log(self.step, record)
        self.history.append({"step": self.step, **record})
        if self._improved(metrics[self.metric]):
            self.best = metrics[self.metric]
            self.save("best.pt")
        return record

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        generator = torch.Generator().manual_seed(cfg.seed)
        progress = Progress(self.total_steps, self.show_progress)
        self.model.train()
        start = time.perf_counter()
        seen = 0
        window_loss = window_correct = window_n = 0.0
        window_start = time.perf_counter()
        micro = 0
        done = False
        while not done:
            for x, y in batches(self.train_set, cfg.batch_size, shuffle=True, generator=generator):
                x, y = x.to(self.device), y.to(self.device)
                output, loss = self.model(x, y)
                (loss / cfg.grad_accum).backward()
                micro += 1
                with torch.no_grad():
                    window_loss += loss.detach() * len(x)
                    window_correct += task_metrics(self.task, output.detach(), y).get("accuracy", 0)
                    window_n += len(x)
                if micro % cfg.grad_accum:
                    continue
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                lr = self.scheduler.get_last_lr()[0]
                self.scheduler.step()
                self.step += 1
                seen += window_n
                last = self.step == self.total_steps
                if self.step % cfg.log_every == 0 or last:
                    elapsed = time.perf_counter() - window_start
                    loss_value = (window_loss / window_n).item()
                    if not math.isfinite(loss_value):
                        raise FloatingPointError(f"loss is {loss_value} at step {self.step}")
                    record = {"train/loss": loss_value, "train/lr": lr, "train/grad_norm": grad_norm.item(),
                              "train/samples_per_s": window_n / max(elapsed, 1e-9)}
                    if self.task == "classification":
                        record["train/accuracy"] = float(window_correct / window_n)
                    self.log.log(self.step, record)
                    self.history.append({"step": self.step, **record})
                    shown = {"loss": record["train/loss"], "samples/s": record["train/samples_per_s"]}
                    if "train/accuracy" in record:
                        shown["acc"] = record["train/accuracy"]
                    progress.update(self.step, shown)
                    window_loss = window_correct = window_n = 0.0
                    window_start = time.perf_counter()
                if self.val_set is not None and cfg.eval_every and (self.step % cfg.eval_every == 0 or last):
                    record = self.validate()
                    progress.write(f"step {self.step}: " + "  ".join(f"{k} {v:.4f}" for k, v in record.items()))
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save("last.pt")
                if last:
                    done = True
                    break
            else:
                if self.val_set is not None and not cfg.eval_every:
                    self.validate()
        progress.close()
        self.save("last.pt")
        self.log.close()
        return {"steps": self.step, "seconds": time.perf_counter() - start, "samples": int(seen),
                f"best_val/{self.metric}": self.best}

"""What a run reports: ``metrics.jsonl`` (mirrored to TensorBoard), the progress bar or lines, and
the window of training steps that each log line sums up."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..task import Task
from ..utils import atomic_write_text
from .metrics import task_metrics


def logged_step(line: str) -> int | None:
    """The step a line of metrics.jsonl logged; None for a line that cannot be read (the half line a
    killed run may leave)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, TypeError, KeyError):
        return None


class MetricsLog:
    """One JSON object per logged step or evaluation in ``metrics.jsonl``, mirrored to TensorBoard.

    Resuming from step k first drops whatever a killed run had logged after k (and a half-written
    line), so the curves never double back; the file is rewritten atomically.
    """

    def __init__(self, run_dir: Path | None, tensorboard: bool = True, resume_step: int | None = None):
        self._fh = self._tb = None
        if run_dir is None:
            return
        path = run_dir / "metrics.jsonl"
        if resume_step is not None and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            # a line that cannot be read goes with the steps after the checkpoint
            kept = [line for line in text.splitlines() if (s := logged_step(line)) is not None and s <= resume_step]
            atomic_write_text(path, "".join(line + "\n" for line in kept))
        self._fh = path.open("a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)

    def log(self, step: int, values: dict[str, Any]) -> None:
        if self._fh:
            self._fh.write(json.dumps({"step": step, **values}) + "\n")
            self._fh.flush()
        if self._tb:
            # One event holding every value: a seventh of the work of one add_scalar call each.
            from tensorboard.compat.proto.summary_pb2 import Summary

            summary = Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
            self._tb.file_writer.add_summary(summary, step)

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


class LogWindow:
    """What happened since the last log line, kept as tensors so the hot loop never waits on them.

    Per micro-batch it only appends references (the loss, a classifier's logits and targets, the
    gradient norm); ``sums`` and ``first_non_finite_step`` reduce them once per log line.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.loss_steps: list[int] = []
        self.sizes: list[int] = []
        self.outputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.grad_norms: list[torch.Tensor] = []
        self.norm_steps: list[int] = []
        self.n = self.tokens = 0
        self.t = time.perf_counter()

    def add(self, step: int, loss: torch.Tensor, x: torch.Tensor, output: torch.Tensor | None, y: torch.Tensor) -> None:
        self.losses.append(loss.detach())
        self.loss_steps.append(step)
        self.sizes.append(len(x))
        if output is not None:
            self.outputs.append(output.detach())
            self.targets.append(y)
        self.n += len(x)
        # Tokens are time steps: (B, T) ids or (B, T, C) features; other batches count one per example.
        timed = x.dim() >= 3 or (x.dim() == 2 and not x.is_floating_point())
        self.tokens += x.shape[0] * (x.shape[1] if timed else 1)

    def add_grad_norm(self, norm: torch.Tensor) -> None:
        self.grad_norms.append(norm.detach())
        self.norm_steps.append(self.loss_steps[-1] if self.loss_steps else 0)

    def last_grad_norm(self) -> float:
        return float(self.grad_norms[-1]) if self.grad_norms else float("nan")

    def _floats(self) -> tuple[list[float], list[float]]:
        """The window's losses and gradient norms as Python floats: two device-to-host copies."""
        losses = torch.stack(self.losses).float().tolist() if self.losses else []
        norms = torch.stack(self.grad_norms).float().tolist() if self.grad_norms else []
        return losses, norms

    def first_non_finite_step(self) -> int | None:
        losses, norms = self._floats()
        bad = [s for s, v in zip([*self.loss_steps, *self.norm_steps], [*losses, *norms]) if not math.isfinite(v)]
        return min(bad) if bad else None

    def sums(self, task: Task) -> torch.Tensor:
        """[sum of per-example losses, number correct (classification), examples, tokens] (float64, CPU)."""
        losses, _ = self._floats()
        correct = 0.0
        if self.outputs:
            correct = float(task_metrics(task, torch.cat(self.outputs), torch.cat(self.targets))["accuracy"])
        loss_sum = math.fsum(v * n for v, n in zip(losses, self.sizes))
        return torch.tensor([loss_sum, correct, float(sum(self.sizes)), float(self.tokens)], dtype=torch.float64)

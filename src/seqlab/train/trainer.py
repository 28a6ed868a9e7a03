"""The training loop. It knows the model only as ``model(x, y) -> (output, loss)``.

Recurrent stream models (truncated BPTT) are called as ``model(x, y, state=state)`` and return
``(output, loss, state)``. Everything else a run needs (where files go, what is printed) is passed
in; the loop itself never looks inside the model.

Around the loop, one module a job: ``optim`` (optimiser, learning-rate schedule), ``metrics`` (task
metrics, ``evaluate``), ``reporting`` (metrics.jsonl, TensorBoard, progress), ``contracts`` (what
it asks of datasets and models), ``checks`` (settings that cannot work with the data), ``stops`` (signals,
non-finite losses), ``checkpoint`` (files, RNG states), ``distributed`` (device, torchrun).
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..nn import detach_state
from ..task import Task
from ..torch_internals import native_bf16
from .checkpoint import rng_state, save_checkpoint, set_rng_state
from .checks import check_trainable
from .compile import report_compile_times, resolve_compile
from .config import TrainConfig
from .contracts import HasLengths, batches, call_model
from .distributed import (
    DistInfo,
    DistributedBatchSampler,
    all_reduce,
    batch_rows,
    gather_objects,
    gather_rows,
    resolve_device,
    seed_this_process,
    shard_rows,
)
from .metrics import ACCURACY_TASKS, default_metric, evaluate
from .optim import build_optimizer, lr_factor
from .reporting import LogWindow, MetricsLog, Progress
from .stops import NonFiniteLoss, TrainingInterrupted, catch_signals


def resolve_precision(
    precision: str, device: torch.device, *, warn: bool = True, option: str = "--train.precision"
) -> str:
    """The precision a run computes in: ``"auto"`` is bf16 where ``device`` computes it natively, else fp32.

    An explicit ``"bf16"`` on a CPU that emulates it runs as asked, with a warning (when ``warn``) that
    names the fix (``option``: the setting that chose it, e.g. ``--precision`` of seqlab eval)."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and device.type == "cpu" and warn and not native_bf16(device):
        warnings.warn(
            f"{option}=bf16 on this CPU is emulated (no native bf16: no AVX-512 or AMX), many times slower "
            "than fp32 (17x for a GPT step in `seqlab bench gpt` on an AVX2 CPU); "
            f"set {option}=auto (bf16 only where native) or fp32",
            stacklevel=3,
        )
    return precision


class Trainer:
    """Runs the optimisation loop; saves and restores everything a run needs to continue exactly.

    Callbacks (minGPT style): ``trainer.add_callback("on_step_end", fn)`` calls ``fn(trainer)``
    after every optimiser step (after any checkpoint of that step was written).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        train_set: Dataset,
        val_set: Dataset | None,
        *,
        task: Task | str,
        run_dir: str | Path | None = None,
        progress: bool = True,
        checkpoint_extra: Callable[[], dict[str, Any]] | None = None,
        dist_info: DistInfo = DistInfo(),
        device: torch.device | None = None,
    ):
        check_trainable(cfg, train_set, val_set, task, dist_info.world_size)
        self.cfg, self.task, self.dist = cfg, Task(task), dist_info
        self.device = device or resolve_device(cfg.device, dist_info.local_rank)
        self.precision = resolve_precision(cfg.precision, self.device, warn=dist_info.is_main)
        self.model = model.to(self.device)
        self.train_set = train_set
        self.val_set = val_set if val_set is not None and len(val_set) > 0 else None
        self.run_dir = Path(run_dir) if run_dir and dist_info.is_main else None
        self.show_progress = progress and dist_info.is_main
        self.checkpoint_extra = checkpoint_extra or dict
        self.stream = cfg.tbptt_steps > 0
        self.net = self.model
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)  # rank 0's weights, broadcast
        seed_this_process(cfg.seed, dist_info)
        if resolve_compile(cfg.compile, self.device):
            self.net = torch.compile(self.net)
        self.optimizer = build_optimizer(self.model, cfg)
        if self.stream:  # every chunk has one row per stream
            rows = [cfg.batch_size] * len(train_set.streams(cfg.batch_size, cfg.tbptt_steps))
        else:
            rows = batch_rows(len(train_set), cfg.batch_size, dist_info.world_size, drop_small_last=True)
        self.batches_per_epoch = len(rows)
        # The rows of the optimiser step each batch belongs to. An epoch's last accumulation group
        # may hold fewer batches, or a smaller last batch, and still makes a full-strength step.
        self._step_rows = [
            sum(rows[g : g + cfg.grad_accum])
            for g in range(0, len(rows), cfg.grad_accum)
            for _ in rows[g : g + cfg.grad_accum]
        ]
        steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.grad_accum)
        self.total_steps = cfg.max_steps if cfg.max_steps else cfg.epochs * steps_per_epoch
        self.metric = cfg.metric or default_metric(task)
        self.mode = "min" if self.metric == "loss" else "max"
        self.step = 0
        self._set_lr()
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of the current epoch already consumed
        self.stream_state = None  # the recurrent state carried between TBPTT chunks (this process's rows)
        self.seconds_before = 0.0  # training time of earlier sessions of this run (before a resume)
        self.session_start = time.perf_counter()
        self.stopped_early = False
        self.window = LogWindow()
        self.best: float | None = None
        self.bad_evals = 0
        self.resumed_from: int | None = None
        self.last_checkpoint: tuple[int, Path] | None = None
        self.callbacks: dict[str, list[Callable[[Trainer], None]]] = {}
        self.add_callback("on_step_end", report_compile_times)

    def _set_lr(self) -> None:
        """The learning rate of the next step: train.lr times the schedule's factor at this step."""
        lr = self.cfg.lr * lr_factor(self.cfg, self.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def add_callback(self, event: str, fn: Callable[[Trainer], None]) -> None:
        self.callbacks.setdefault(event, []).append(fn)

    # -- checkpoints ---------------------------------------------------------------------------
    def _full_stream_state(self):
        """The carried state with every process's rows (batch is dim 1 of (layers, B, H))."""
        if self.stream_state is None:
            return None
        state = self.stream_state
        if isinstance(state, torch.Tensor):
            return gather_rows(state, self.dist, dim=1).cpu()
        return tuple(gather_rows(s, self.dist, dim=1).cpu() for s in state)

    def _position(self) -> dict[str, Any]:
        """Where the data stands. A checkpoint written at an epoch's last step (before fit moves on) says
        the next epoch's start: nothing of the finished one is left, so a resume may change the batching."""
        if self.batch_in_epoch >= self.batches_per_epoch:
            return {"epoch": self.epoch + 1, "batch": 0, "stream_state": None}
        return {"epoch": self.epoch, "batch": self.batch_in_epoch, "stream_state": self._full_stream_state()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue (a collective under torchrun: call it on every process)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # The schedule is a function of the step (lr_factor); this records which one it was.
            "scheduler": {
                "schedule": self.cfg.schedule,
                "lr": self.cfg.lr,
                "warmup_steps": self.cfg.warmup_steps,
                "total_steps": self.total_steps,
            },
            "step": self.step,
            "position": self._position(),
            "best": self.best,
            "bad_evals": self.bad_evals,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds(),
            **self._rng_states(),
            **self.checkpoint_extra(),
        }

    def _rng_states(self) -> dict[str, Any]:
        """``rng``: this process's RNG states; under torchrun rank 0's, and ``rng_ranks``: every process's."""
        states = gather_objects(rng_state(), self.dist)
        return {"rng": states[0], "rng_ranks": states} if self.dist.enabled else {"rng": states[0]}

    def _restore_rng(self, ckpt: dict[str, Any]) -> None:
        ranks = ckpt.get("rng_ranks")
        if ranks is not None and len(ranks) == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank])  # each process continues its own stream
            return
        set_rng_state(ckpt["rng"])
        # Saved by another number of processes: the streams cannot be matched up, only kept apart.
        seed_this_process(self.cfg.seed + self.step, self.dist)

    def load_state_dict(self, ckpt: dict[str, Any], path: Path | None = None) -> None:
        """Continue from a checkpoint: weights, optimiser, schedule, data position and RNGs.

        Settings of ``train`` that differ from the checkpoint's (lr, weight decay, momentum,
        max_steps) take effect from here on.
        """
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = self.resumed_from = ckpt["step"]
        pos = ckpt["position"]
        self.epoch, self.batch_in_epoch = pos["epoch"], pos["batch"]
        state = pos.get("stream_state")
        if state is not None:
            to_local = lambda s: shard_rows(s.to(self.device), self.dist, dim=1)  # noqa: E731
            state = to_local(state) if isinstance(state, torch.Tensor) else tuple(to_local(s) for s in state)
        self.stream_state = state
        self.best, self.bad_evals = ckpt["best"], ckpt.get("bad_evals", 0)
        self.stopped_early = ckpt.get("stopped_early", False)  # an early-stopped run stays stopped
        self.seconds_before = ckpt.get("seconds", 0.0)
        self._set_lr()
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.cfg.weight_decay
            if "momentum" in group:
                group["momentum"] = self.cfg.momentum
        self._restore_rng(ckpt)
        if path is not None:
            self.last_checkpoint = (self.step, path)

    def save(self, name: str) -> Path | None:
        """Write checkpoints/NAME, unless the loss went non-finite since the last check (then raise)."""
        self._check_finite()
        state = self.state_dict()
        if self.run_dir is None:
            return None
        path = save_checkpoint(self.run_dir / "checkpoints" / name, state)
        if name == "last.pt":
            self.last_checkpoint = (self.step, path)
        return path

    # -- evaluation ----------------------------------------------------------------------------
    def _improved(self, value: float) -> bool:
        """A better validation value than the best so far (ties keep the earlier one). NaN never is: as
        the best it would make every later value look worse, and keep best.pt at a NaN step."""
        if math.isnan(value):
            return False
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def validate(self, log: MetricsLog) -> dict[str, float]:
        metrics = evaluate(
            self.model,
            self.val_set,
            task=self.task,
            batch_size=max(self.cfg.batch_size, 256),
            device=self.device,
            dist_info=self.dist,
        )
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
        """This process's ``(x, y)`` for the rest of the current epoch (the step's rows: ``_step_rows``)."""
        if self.stream:
            chunks = self.train_set.streams(self.cfg.batch_size, self.cfg.tbptt_steps)
            for i in range(self.batch_in_epoch, len(chunks)):
                x, y = chunks[i]  # (B, t) each: row b continues row b of the previous chunk
                yield shard_rows(x, self.dist), shard_rows(y, self.dist)
            return
        lengths = self.train_set.lengths if isinstance(self.train_set, HasLengths) else None
        sampler = DistributedBatchSampler(
            len(self.train_set),
            self.cfg.batch_size,
            seed=self.cfg.seed,
            epoch=self.epoch,
            info=self.dist,
            skip=self.batch_in_epoch,
            drop_small_last=True,
            bucket=self.cfg.bucket,
            lengths=lengths,
        )
        yield from batches(self.train_set, sampler)

    def _layer_grad_norms(self) -> dict[str, float]:
        return {
            f"grad_norm/{name}": p.grad.norm().item() for name, p in self.model.named_parameters() if p.grad is not None
        }

    def _signal(self, flag: dict[str, int]) -> int:
        """The signal to stop on, agreed by every process (one received by any of them counts)."""
        if not self.dist.enabled:
            return flag["signum"]
        return int(all_reduce(torch.tensor([flag["signum"]], device=self.device), self.dist, "max"))

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        log = MetricsLog(self.run_dir, cfg.tensorboard, resume_step=self.resumed_from)
        progress = Progress(self.total_steps, self.step, self.show_progress)
        # Entering a disabled autocast still costs microseconds a step: skip it for fp32.
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16"
            else contextlib.nullcontext()
        )
        flag = {"signum": 0}
        self.model.train()
        self.session_start = time.perf_counter()
        self.window.reset()
        micro = 0
        stop = self.stopped_early
        try:
            with catch_signals(flag):
                while self.step < self.total_steps and not stop:
                    for x, y in self._epoch_batches():
                        step_rows = self._step_rows[self.batch_in_epoch]
                        self.batch_in_epoch += 1
                        epoch_done = self.batch_in_epoch >= self.batches_per_epoch
                        x, y = x.to(self.device), y.to(self.device)
                        with autocast:
                            output, loss, state = call_model(self.net, x, y, self.stream_state, self.stream)
                        if self.stream:
                            self.stream_state = detach_state(state)  # truncated BPTT: no gradient past here
                        # Each (micro-)batch's mean loss weighted by its share of the step's rows (times
                        # the processes, whose gradients DDP averages): the step then equals one process's
                        # step on all of the step's rows, however they were split.
                        share = len(x) * self.dist.world_size / step_rows
                        (loss * share if share != 1 else loss).backward()
                        micro += 1
                        self.window.add(self.step + 1, loss, x, output if self.task in ACCURACY_TASKS else None, y)
                        if micro < cfg.grad_accum and not epoch_done:
                            continue
                        micro = 0
                        stop = self._optimizer_step(log, progress, flag, epoch_done)
                        if stop:
                            break
                    if self.batch_in_epoch >= self.batches_per_epoch:  # this epoch is used up
                        self.epoch += 1
                        self.batch_in_epoch = 0
                        self.stream_state = None  # each pass over the streams starts from a zero state
                        micro = 0
                self.save("last.pt")
        finally:
            progress.close()
            log.close()
        return {
            "steps": self.step,
            # Passes over the training data: whole epochs plus the share of the current one.
            "epochs": round(self.epoch + self.batch_in_epoch / self.batches_per_epoch, 3),
            "seconds": self.seconds(),
            "stopped_early": self.stopped_early,
            f"best_val/{self.metric}": self.best,
        }

    def release_distributed(self) -> None:
        """Let go of the DDP wrapper (and its hold on the process group) before the group is torn down.

        The wrapper is destroyed here, cycles included, while every peer is still in the group.
        """
        if self.net is not self.model:
            self.net = self.model
            gc.collect()

    def seconds(self) -> float:
        """Training time of this run so far, over every session (resumes included)."""
        return self.seconds_before + time.perf_counter() - self.session_start

    def _optimizer_step(self, log: MetricsLog, progress: Progress, flag: dict[str, int], epoch_done: bool) -> bool:
        """Clip, step, log, evaluate, checkpoint; True when the run should stop here."""
        cfg = self.cfg
        if cfg.layer_norms_every and (self.step + 1) % cfg.layer_norms_every == 0:
            log.log(self.step + 1, self._layer_grad_norms())  # before clipping
        clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
        self.step += 1
        self._set_lr()
        self.window.add_grad_norm(grad_norm)
        last = self.step >= self.total_steps
        evaluate_now = self.val_set is not None and (
            (cfg.eval_every and self.step % cfg.eval_every == 0) or last or (not cfg.eval_every and epoch_done)
        )
        checkpoint_now = self.step % cfg.checkpoint_every == 0 if cfg.checkpoint_every else evaluate_now
        signum = self._signal(flag)
        if self.step % cfg.log_every == 0 or last or checkpoint_now or evaluate_now or signum:
            self._check_finite()
            self._log_window(log, progress, lr)
        if evaluate_now:
            record = self.validate(log)
            progress.write(f"step {self.step}: " + "  ".join(f"{k} {v:.4f}" for k, v in record.items()))
            if cfg.early_stopping_patience and self.bad_evals >= cfg.early_stopping_patience:
                best = f"best {self.best:.4f}" if self.best is not None else "no finite value yet"
                progress.write(
                    f"early stopping at step {self.step}: val/{self.metric} has not improved "
                    f"for {self.bad_evals} evaluations ({best})"
                )
                self.stopped_early = True
        if checkpoint_now and not last:  # the last step's checkpoint is written once, after the loop
            self.save("last.pt")
        if evaluate_now or checkpoint_now:  # the window was logged above: restart its clock after the work
            self.window.t = time.perf_counter()  # so throughput counts training, not evaluating or saving
        for fn in self.callbacks.get("on_step_end", []):
            fn(self)
        if signum:
            raise TrainingInterrupted(signum, self.step, self.save("last.pt"), is_main=self.dist.is_main)
        return last or self.stopped_early

    def _check_finite(self) -> None:
        bad = self.window.first_non_finite_step()  # one sync, only at log and checkpoint steps
        if self.dist.enabled:  # the earliest any process saw, so that all stop together
            bad_t = torch.tensor([bad if bad is not None else 2**62], device=self.device)
            bad = int(all_reduce(bad_t, self.dist, "min"))
            bad = None if bad == 2**62 else bad
        if bad is None:
            return
        if self.last_checkpoint:
            step, path = self.last_checkpoint
            kept = f"the last good checkpoint, {path} (step {step}), was kept"
        else:
            kept = "no checkpoint had been written yet"
        raise NonFiniteLoss(
            f"the loss or gradient became non-finite at step {bad}; stopped at step {self.step}; "
            f"{kept}. Try a lower train.lr, train.grad_clip, or train.precision=fp32",
            is_main=self.dist.is_main,
        )

    def _log_window(self, log: MetricsLog, progress: Progress, lr: float) -> None:
        w = self.window
        sums = w.sums(self.task)
        if self.dist.enabled:  # loss sum, correct, examples, tokens over every process
            sums = all_reduce(sums.to(self.device), self.dist).cpu()
        loss_sum, correct, n, tokens = sums.tolist()
        n = max(n, 1)
        elapsed = max(time.perf_counter() - w.t, 1e-9)
        record = {
            "train/loss": loss_sum / n,
            "train/lr": lr,
            "train/grad_norm": w.last_grad_norm(),
            "train/samples_per_s": n / elapsed,
            "train/tokens_per_s": tokens / elapsed,
            "train/seconds": self.seconds(),  # wall time of the run so far (all sessions): curves against time
        }
        if self.task in ACCURACY_TASKS:
            record["train/accuracy"] = correct / n
        log.log(self.step, record)
        shown = {"loss": record["train/loss"]}
        if "train/accuracy" in record:
            shown["acc"] = record["train/accuracy"]
        shown["samples/s"] = record["train/samples_per_s"]
        progress.update(self.step, shown)
        w.reset()

"""How a run stops before its budget: a signal (Ctrl-C, SIGTERM, SIGHUP) or a loss that is not finite."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path


class TrainingInterrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived; the trainer saved ``checkpoint`` at ``step`` and stopped.

    Every process of a torchrun run raises it at the same step; ``is_main`` (rank 0) is the one to report.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None, *, is_main: bool = True):
        self.signum, self.step, self.checkpoint, self.is_main = signum, step, checkpoint, is_main
        super().__init__(f"{signal.Signals(signum).name} at step {step}")


class NonFiniteLoss(FloatingPointError):
    """The loss or the gradient became NaN or infinite; the last good checkpoint was kept.

    Every process of a torchrun run raises it at the same step; only rank 0 (``is_main``) knows
    the checkpoint it wrote, so only its message is the one to show.
    """

    def __init__(self, message: str, *, is_main: bool = True):
        super().__init__(message)
        self.is_main = is_main


# SIGHUP (the terminal or ssh session closed) stops a run like SIGTERM; Windows has no SIGHUP.
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def catch_signals(flag: dict[str, int]):
    """Turn SIGINT/SIGTERM/SIGHUP into a flag the loop checks between steps (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if flag["signum"]:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        flag["signum"] = signum

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)

"""What several commands share: the ``--section.key=value`` overrides left over by argparse, and output helpers."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys

from ..config import ConfigError


def overrides(extra: list[str], allowed: tuple[str, ...]) -> list[str]:
    """``extra`` (what argparse did not parse) if each is ``--section.key=value`` with section in ``allowed``."""
    for arg in extra:
        section = arg[2:].split(".", 1)[0] if arg.startswith("--") and "." in arg else None
        if section not in allowed:
            if not allowed:
                raise ConfigError(f"unrecognised argument {arg!r}; this command takes no --section.key=value overrides")
            raise ConfigError(
                f"unrecognised argument {arg!r}; overrides look like --section.key=value "
                f"with section in: {', '.join(allowed)}"
            )
    return extra


def data_overrides(extra: list[str]) -> dict:
    """The ``--data.key=value`` overrides as a dict (for a command on an existing run: where its data is now)."""
    from ..config import parse_overrides

    return parse_overrides(overrides(extra, ("data",))).get("data", {})


def checkpoint_option(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint NAME`` of the commands that read a run's model."""
    parser.add_argument(
        "--checkpoint",
        default="last.pt",
        help="a file name in RUN_DIR/checkpoints, e.g. best.pt (default: last.pt); not a path: a checkpoint "
        "elsewhere belongs to its own run directory",
    )


def device_option(parser: argparse.ArgumentParser) -> None:
    """``--device`` of the commands that run a trained model: by default the run's own train.device."""
    parser.add_argument(
        "--device",
        default=None,
        choices=["auto", "cpu", "cuda", "mps"],
        help="where the model runs (default: the run's train.device; --device cpu uses a GPU-trained run anywhere)",
    )


def precision_option(parser: argparse.ArgumentParser) -> None:
    """``--precision`` of the commands that run a trained model: fp32 by default, whatever the run trained in."""
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "auto"],  # runs.use.PRECISIONS (not imported: --help needs no torch)
        help="fp32 (default, whatever train.precision the run trained with), bf16 (autocast around the "
        "model's forward passes; emulated, and slow, on a CPU without AVX-512 or AMX: said), or auto "
        "(bf16 where the device computes it natively, else fp32)",
    )


def warn_as(command: str):
    """A ``notify`` that prints ``seqlab COMMAND: warning: TEXT`` on stderr."""
    return lambda text: print(f"seqlab {command}: warning: {text}", file=sys.stderr)


class OutputGuard:
    """sys.stdout or sys.stderr that keeps working after its reader went away.

    A closed pipe (``seqlab train ... | head -2``, a dead ``tee``) or a hung-up terminal makes every
    write fail (EPIPE, EIO); unguarded, the next progress line would end a training run with nothing
    saved. The first such failure points the file descriptor at /dev/null: output is dropped from
    then on and the work goes on (a closed terminal also sends SIGHUP, which stops ``train`` cleanly).
    """

    def __init__(self, stream):
        self._stream = stream
        self.reader_gone = False  # True once a write failed: a command whose output is all it makes may stop

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as err:
            self._drop(err)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            self._drop(err)

    def _drop(self, err: OSError) -> None:
        if err.errno not in (errno.EPIPE, errno.EIO):
            raise err
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            self._stream.flush()  # what was still buffered goes to /dev/null too
        except (OSError, ValueError):  # no file descriptor (an in-memory stream): keep dropping
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_output():
    """sys.stdout and sys.stderr behind ``OutputGuard`` for the duration (and flushed through it)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = OutputGuard(saved[0]), OutputGuard(saved[1])
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


# The epilog of the commands that read an existing run's data.
MOVED_DATA = "--data.path=... / --data.root=...: where the run's data is now, if it moved"


def command(sub, name: str, help: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """One command's parser: ``help`` is its line in ``seqlab --help``; ``description`` and ``epilog``
    (examples, lists) are shown with their lines as written."""
    return sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )

"""``seqlab runs``: a text table of the run directories in a folder."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError


def _read_summary(path: Path, warn: Callable[[str], None]) -> dict[str, Any] | None:
    """A run's summary.json as a dict, or None after one line through ``warn`` naming the damaged file."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        problem = f"cannot be read ({err})"
    except json.JSONDecodeError as err:
        problem = f"is not valid JSON ({err})"
    else:
        if not isinstance(summary, dict):
            problem = f"holds {'null' if summary is None else type(summary).__name__}, not a JSON object"
        else:
            numbers = ("params", "seconds", "test/", "best_val/")  # the table formats these as numbers
            wrong = next(
                (
                    k
                    for k, v in summary.items()
                    if k.startswith(numbers) and v is not None and not isinstance(v, (int, float))
                ),
                None,
            )
            if wrong is None:
                return summary
            problem = f"has a non-number {wrong}: {summary[wrong]!r}"
    warn(f"skipped {path}: it {problem}")
    return None


def _last_step(metrics: Path) -> int:
    """The step of the last readable line of metrics.jsonl (a killed run may leave half a line)."""
    for line in reversed(metrics.read_text(errors="replace").splitlines()):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, TypeError, KeyError):
            continue
    return 0


def runs_table(
    root: str | Path = "runs", warn: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
) -> str:
    """A text table of the run directories under ``root`` (finished or not), oldest first.

    A damaged summary.json (not JSON, not an object, a number that is not one) leaves its run out,
    with one line through ``warn`` naming the file; the other runs are listed.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"runs folder not found: {root}")
    rows = [("name", "task", "model", "params", "steps", "best val", "test", "baseline", "seconds")]
    for run in sorted(p for p in root.iterdir() if (p / "config.toml").is_file()):
        summary_path = run / "summary.json"
        if summary_path.is_file():
            s = _read_summary(summary_path, warn)
            if s is None:
                continue
            best = next(((k[len("best_val/") :], v) for k, v in s.items() if k.startswith("best_val/")), None)
            test = next(
                ((k[len("test/") :], v) for k, v in s.items() if k.startswith("test/") and k != "test/loss"),
                ("loss", s.get("test/loss")),
            )
            baselines = [
                (k[len("baseline/") :], v)
                for k, v in s.items()
                if k.startswith("baseline/") and isinstance(v, (int, float))
            ]
            base = next((kv for kv in baselines if kv[0].endswith("_test")), baselines[0] if baselines else None)
            fmt = lambda kv: f"{kv[0]} {kv[1]:.4f}" if kv and kv[1] is not None else "-"  # noqa: E731
            rows.append(
                (
                    run.name,
                    s.get("task", "-"),
                    s.get("model", "-"),
                    f"{s.get('params', 0):,}",
                    str(s.get("steps", "-")),
                    fmt(best),
                    fmt(test),
                    fmt(base),
                    f"{s.get('seconds', 0):.1f}",
                )
            )
        else:
            steps = "-"
            metrics = run / "metrics.jsonl"
            if metrics.is_file():
                steps = _last_step(metrics)
            rows.append((run.name, "-", "-", "-", f"{steps} (unfinished)", "-", "-", "-", "-"))
    if len(rows) == 1:
        return f"no runs in {root}"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

"""``seqlab runs``: a text table of the run directories in a folder."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_toml
from ..train.reporting import logged_step

NUMBERS = ("params", "seconds", "steps", "test/", "best_val/", "baseline/")  # the table formats these as numbers


def _read_summary(path: Path, warn: Callable[[str], None]) -> dict[str, Any]:
    """A run's summary.json as a dict of what the table can show. What is damaged is said in one line
    through ``warn`` naming the file: unreadable, not JSON or not an object gives {} (the run is listed
    without it); a value of the wrong type is left out (the rest of the summary is shown)."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        problem = f"cannot be read ({err})"
    except json.JSONDecodeError as err:
        problem = f"is not valid JSON ({err})"
    else:
        if isinstance(summary, dict):
            wrong = [
                k
                for k, v in summary.items()
                if k.startswith(NUMBERS) and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))
            ]
            wrong += [k for k in ("task", "model") if k in summary and not isinstance(summary[k], str)]
            if wrong:
                shown = ", ".join(f"{k} = {summary[k]!r}" for k in wrong[:3])
                warn(f"{path}: {shown} {'is' if len(wrong) == 1 else 'are'} not of the expected type; shown as -")
            return {k: v for k, v in summary.items() if k not in wrong}
        problem = f"holds {'null' if summary is None else type(summary).__name__}, not a JSON object"
    warn(f"{path} {problem}; the run is listed without it")
    return {}


def find_runs(root: Path) -> list[Path]:
    """Run directories at any depth below ``root`` (``--out`` folders, a compare's ``OUT/runs/``, ...), by path:
    a folder with config.toml and what seqlab train writes beside it (command.txt, metrics.jsonl, checkpoints/)."""
    marks = ("command.txt", "metrics.jsonl", "checkpoints", "summary.json")
    found = {p.parent for p in root.rglob("config.toml") if any((p.parent / m).exists() for m in marks)}
    return sorted(found)


def _model_name(config: Path) -> str:
    """[model] name of a run's config.toml (written before training starts), or "-" if it cannot be read."""
    try:
        name = load_toml(config).get("model", {}).get("name")
    except (ConfigError, OSError, AttributeError):
        return "-"
    return name if isinstance(name, str) and name else "-"


def _last_step(metrics: Path) -> int:
    """The step of the last readable line of metrics.jsonl (a killed run may leave half a line)."""
    steps = map(logged_step, reversed(metrics.read_text(errors="replace").splitlines()))
    return next((s for s in steps if s is not None), 0)


def runs_table(
    root: str | Path = "runs", warn: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
) -> str:
    """A text table of the run directories under ``root`` (finished or not), by path.

    Runs are found at any depth below ``root`` and named by their path from it. A damaged summary.json
    (not JSON, not an object, a value of the wrong type) is said in one line through ``warn`` naming the
    file, and the run is listed with what could be read.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"runs folder not found: {root}")
    rows = [("name", "task", "model", "params", "steps", "best val", "test", "baseline", "seconds")]
    for run in find_runs(root):
        name = run.relative_to(root).as_posix() if run != root else run.name
        summary_path = run / "summary.json"
        s = _read_summary(summary_path, warn) if summary_path.is_file() else None
        if s:
            best = next(((k[len("best_val/") :], v) for k, v in s.items() if k.startswith("best_val/")), None)
            test = next(
                ((k[len("test/") :], v) for k, v in s.items() if k.startswith("test/") and k != "test/loss"),
                ("loss", s.get("test/loss")),
            )
            baselines = [(k[len("baseline/") :], v) for k, v in s.items() if k.startswith("baseline/")]
            base = next((kv for kv in baselines if kv[0].endswith("_test")), baselines[0] if baselines else None)
            fmt = lambda kv: f"{kv[0]} {kv[1]:.4f}" if kv and kv[1] is not None else "-"  # noqa: E731
            rows.append(
                (
                    name,
                    s.get("task", "-"),
                    s.get("model", "-"),
                    f"{s['params']:,}" if s.get("params") is not None else "-",
                    str(s.get("steps", "-")),
                    fmt(best),
                    fmt(test),
                    fmt(base),
                    f"{s['seconds']:.1f}" if s.get("seconds") is not None else "-",
                )
            )
        else:
            steps = "-"
            metrics = run / "metrics.jsonl"
            if metrics.is_file():
                steps = _last_step(metrics)
            state = "unfinished" if s is None else "summary damaged"
            rows.append((name, "-", _model_name(run / "config.toml"), "-", f"{steps} ({state})", "-", "-", "-", "-"))
    if len(rows) == 1:
        return f"no runs in {root}"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

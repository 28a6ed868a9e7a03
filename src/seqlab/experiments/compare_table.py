"""``seqlab compare``'s outputs: the families' numbers over their seeds as a markdown table and compare.json."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..utils import atomic_write_text
from .compare import CompareResult, FamilyResult


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1; None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def family_row(f: FamilyResult, metric: str) -> dict[str, Any]:
    """One family's numbers over its seeds, exact (compare.json) and as the table shows them."""
    values = [float(s[metric]) for s in f.summaries]
    seconds = [float(s["seconds"]) for s in f.summaries]
    rates = [s["steps"] / s["seconds"] for s in f.summaries if s.get("seconds")]
    mean, std = mean_std(values)
    return {
        "family": f.member.family,
        "model": f.member.model.name,
        "width_key": f.member.width_key,
        "width": f.member.width,
        "params": f.summaries[0]["params"],
        "values": values,
        "mean": mean,
        "std": std,
        "seconds": seconds,
        "seconds_mean": statistics.fmean(seconds),
        "steps_per_second_mean": statistics.fmean(rates) if rates else None,
        "steps": [s["steps"] for s in f.summaries],
        "runs": [str(p) for p in f.runs],
    }


def markdown_table(result: CompareResult) -> str:
    """The comparison as a markdown table, one row per family, and the settings under it."""
    n = len(result.plan.seeds)
    spread = f"mean ± std over {n} seeds" if n > 1 else "1 seed"
    rows = [
        f"| family | model | width | params | {result.metric} ({spread}) | train seconds (mean) | steps/s (mean) |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for f in result.families:
        r = family_row(f, result.metric)
        value = f"{r['mean']:.4f}" + (f" ± {r['std']:.4f}" if r["std"] is not None else "")
        rate = f"{r['steps_per_second_mean']:.1f}" if r["steps_per_second_mean"] is not None else "-"
        rows.append(
            f"| {r['family']} | {f.member.describe()} | {r['width_key']} {r['width']} | {r['params']:,} | "
            f"{value} | {r['seconds_mean']:.1f} | {rate} |"
        )
    plan = result.plan
    notes = [
        f"Data '{plan.data.name}' ({plan.task}), {plan.budget()}, seeds {', '.join(map(str, plan.seeds))}; "
        + (
            "widths chosen to match the first family's parameter count."
            if plan.match == "params"
            else "every family at the first family's width."
        )
    ]
    if plan.baseline:
        notes.append(
            "Baseline: "
            + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in plan.baseline)
            + "."
        )
    return "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def write_compare(result: CompareResult, out: str | Path) -> dict[str, Path]:
    """``out/compare.md`` (the table) and ``out/compare.json`` (every run's number, the means and stds)."""
    out = Path(out)
    table = atomic_write_text(out / "compare.md", markdown_table(result))
    plan = result.plan
    payload = {
        "metric": result.metric,
        "task": plan.task.value,
        "data": plan.data.name,
        "match": plan.match,
        "seeds": list(plan.seeds),
        "budget": plan.budget(),
        "families": [family_row(f, result.metric) for f in result.families],
    }
    data = atomic_write_text(out / "compare.json", json.dumps(payload, indent=2) + "\n")
    return {"table": table, "json": data}

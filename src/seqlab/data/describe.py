"""Text about datasets for ``seqlab data list`` and ``seqlab data info``: sizes, shapes, one example."""

from __future__ import annotations

import math

import torch

from ..task import Task
from .registry import DATASETS

SHADES = " .:-=+*#%@"


def list_datasets() -> list[tuple[str, str]]:
    """Every registered dataset as (name, one-line description), in registry order."""
    return [(name, entry.description) for name, entry in DATASETS.items()]


def describe(config) -> str:
    """Build the dataset ``config`` names and describe it: sizes, shapes, vocabularies, skips, one example."""
    splits = DATASETS[config.name].build(config)
    info = splits.info
    lines = [f"{config.name}: {DATASETS[config.name].description}"]
    lines.append(
        "splits: "
        + ", ".join(
            f"{part} {len(ds):,}" for part, ds in zip(("train", "val", "test"), (splits.train, splits.val, splits.test))
        )
    )
    x0, y0 = splits.train[0]
    lines.append(f"task: {info.get('task')}" + (f", metric: {info['metric']}" if info.get("metric") else ""))
    lines.append(
        f"one example: x {tuple(x0.shape)} {str(x0.dtype).removeprefix('torch.')}, "
        f"y {tuple(y0.shape)} {str(y0.dtype).removeprefix('torch.')}"
    )
    for key in (
        "input_size",
        "num_classes",
        "vocab_size",
        "src_vocab_size",
        "tgt_vocab_size",
        "tau",
        "horizon",
        "filled",
    ):
        if info.get(key) is not None:
            lines.append(f"{key}: {info[key]:,}" if isinstance(info[key], int) else f"{key}: {info[key]}")
    if "scaler" in info:
        s = info["scaler"]
        lines.append(f"normalisation ({s.kind}, fitted on train): z = (v - {s.shift:.6g}) / {s.scale:.6g}")
    if "baseline" in info:
        b = info["baseline"]
        nums = ", ".join(f"{k} {v:.4g}" for k, v in b.items() if isinstance(v, float))
        lines.append(f"baseline: {nums} ({b.get('strategy', '')})")
    if "layout" in info:
        lines.append(f"layout: {info['layout']}")
    for message in info.get("messages", []):
        lines.append(message)
    lines.append("example (train[0]):")
    lines += ["  " + line for line in _example(x0, y0, info)]
    return "\n".join(lines)


def _example(x: torch.Tensor, y: torch.Tensor, info: dict) -> list[str]:
    task = info.get("task")
    if task == Task.SEQ2SEQ:
        sep = info.get("token_separator", "")
        return [f"x: {info['src_vocab'].decode(x, sep)!r}", f"y: {info['tgt_vocab'].decode(y, sep)!r}"]
    if task == Task.LANGUAGE_MODEL:
        v = info["vocab"]
        return [f"x: {v.decode(x)!r}", f"y: {v.decode(y)!r}"]
    if task == Task.SEQUENCE_LABELING:  # copy memory
        sx = x.argmax(-1) if x.dim() == 2 else x
        return [f"x: {_symbols(sx)}", f"y: {_symbols(y)}", "(_ blank, | delimiter)"]
    if task == Task.CLASSIFICATION:
        return _image(x, info) + [f"label: {int(y)}"]
    if task == Task.REGRESSION and "scaler" in info:
        inv = info["scaler"].inverse
        past = ", ".join(f"{v:.4g}" for v in inv(x[-5:, 0]).tolist())
        return [f"x (last {min(5, len(x))} of tau={len(x)}, original units): ... {past}", f"y: {inv(y).item():.4g}"]
    if task == Task.REGRESSION and x.shape[-1] == 2:  # adding problem
        marked = torch.nonzero(x[:, 1]).flatten().tolist()
        terms = " + ".join(f"{x[t, 0].item():.4f} (t={t})" for t in marked)
        return [f"marked values: {terms}", f"y: {y.item():.4f}"]
    return [f"x: {x.flatten()[:10].tolist()} ...", f"y: {y.flatten()[:10].tolist()}"]


def _symbols(ids: torch.Tensor) -> str:
    """Symbols 1..8 as digits, blank as _, the delimiter as |, long runs of blanks shortened."""
    out, run = [], 0
    for s in ids.tolist() + [None]:
        if s == 0:
            run += 1
            continue
        if run:
            out.append("_" * run if run <= 6 else f"_ x{run} ")
            run = 0
        if s is not None:
            out.append("|" if s == 9 else str(s))
    return "".join(out)


def _image(x: torch.Tensor, info: dict) -> list[str]:
    """An image in ASCII shades, from rows (H, W), pixels (H*W, 1) or permuted pixels."""
    pixels = x.reshape(-1)
    if "permutation" in info:
        restored = torch.empty_like(pixels)
        restored[info["permutation"]] = pixels  # x[t] is pixel permutation[t]
        pixels = restored
    H, W = info.get("image_shape") or (x.shape if x.shape[-1] > 1 else (math.isqrt(len(pixels)),) * 2)
    if H * W != len(pixels):
        return [f"x: {pixels[:10].tolist()} ..."]
    img = pixels.reshape(H, W)  # (H, W)
    hi = float(img.max()) or 1.0
    return [
        "".join(SHADES[min(int(v / hi * (len(SHADES) - 1) + 0.5), len(SHADES) - 1)] for v in row.tolist())
        for row in img
    ]

"""``seqlab data``: the datasets seqlab knows, or one described (sizes, shapes, an example)."""

from __future__ import annotations

import argparse

from ..config import ConfigError
from .common import command, data_overrides, overrides

HELP = "list datasets or describe one"
DESCRIPTION = "seqlab data list | seqlab data info NAME [--data.key=value ...]"


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "data", HELP, DESCRIPTION)
    p.add_argument("action", choices=["list", "info"])
    p.add_argument("name", nargs="?", help="dataset name (for info)")
    return p


def run(args, extra: list[str], argv: list[str]) -> int:
    from .. import data
    from ..config import from_dict

    if args.action == "list":
        overrides(extra, ())
        width = max(len(name) for name in data.DATASETS)
        for name, entry in sorted(data.DATASETS.items()):
            print(f"{name:<{width}}  {entry.description}")
        return 0
    if args.name is None:
        raise ConfigError(f"give a dataset name: seqlab data info NAME, one of {', '.join(sorted(data.DATASETS))}")
    if args.name not in data.DATASETS:
        raise ConfigError(f"unknown dataset {args.name!r}; valid names: {', '.join(sorted(data.DATASETS))}")
    values = data_overrides(extra)
    cfg = from_dict(data.DATASETS[args.name].config, {**values, "name": args.name}, "data")
    print(data.describe(cfg))
    return 0

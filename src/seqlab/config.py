"""Typed configs: frozen dataclasses filled from TOML tables and ``--section.key=value`` overrides.

Every layer of seqlab (models, data, train) declares its settings as a frozen dataclass; this
module only turns plain dicts into those dataclasses, checking every key and type on the way,
so that a typo in a config file or on the command line is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConfigError(ValueError):
    """A user's config mistake: unknown key, wrong type, missing file. The CLI exits with 2."""


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` as type ``tp`` or raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of {_type_name(args[0])}, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if tp is float:
        # An int is a valid float (lr = 1 in TOML), a bool is not.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return int(value)
    elif tp in (bool, str):
        if isinstance(value, tp):
            return value
    elif tp is Any:
        return value
    else:  # pragma: no cover - a developer error, not a user's
        raise TypeError(f"{where}: unsupported config field type {tp!r}")
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def from_dict(cls: type, values: Mapping[str, Any], section: str):
    """Build dataclass ``cls`` from ``values``; unknown keys and wrong types are ConfigErrors."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        key = unknown[0]
        raise ConfigError(f"unknown key '{section}.{key}' for {cls.__name__}; valid keys: " + ", ".join(sorted(fields)))
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing key '{section}.{missing[0]}' for {cls.__name__}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # __post_init__ validation
        raise ConfigError(f"[{section}] {err}") from None


def to_dict(cfg) -> dict[str, Any]:
    """A dataclass as a plain dict of TOML-able values (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        hint = (
            f"; to go on training the run in it: seqlab train --resume {path}"
            if (path / "config.toml").is_file()
            else ""
        )
        raise ConfigError(f"{path} is a folder, not a config file; give a .toml file (configs/ has presets){hint}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def parse_value(text: str) -> Any:
    """A command-line value read as TOML (``3``, ``1e-3``, ``true``, ``[1, 2]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(args: list[str]) -> dict[str, dict[str, Any]]:
    """``["--train.lr=0.01", "--model.cell=gru"]`` -> ``{"train": {"lr": 0.01}, "model": {"cell": "gru"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for arg in args:
        body = arg[2:] if arg.startswith("--") else arg
        key, sep, text = body.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name:
            raise ConfigError(f"cannot read override {arg!r}: expected --section.key=value, e.g. --train.lr=0.001")
        out.setdefault(section, {})[name] = parse_value(text)
    return out


def merge(base: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for section, values in overrides.items():
        if not isinstance(merged.setdefault(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table of keys, got {merged[section]!r}")
        merged[section].update(values)
    return merged


def toml_value(v: Any) -> str:
    """``v`` written as a TOML value (also how a command-line override spells it)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def dump_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Write ``{section: {key: value}}`` as TOML; ``None`` values are left out (TOML has no null)."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


# -- checks for __post_init__: each raises ValueError("section.key must be ..., got ...") ----------


def check_choice(section: str, cfg, key: str, choices) -> None:
    if getattr(cfg, key) not in choices:
        raise ValueError(f"{section}.{key} must be one of {', '.join(map(str, choices))}, got {getattr(cfg, key)!r}")


def check_at_least(section: str, cfg, *keys: str, minimum: int = 1) -> None:
    for key in keys:
        if getattr(cfg, key) < minimum:
            raise ValueError(f"{section}.{key} must be >= {minimum}, got {getattr(cfg, key)}")


def check_fraction(section: str, cfg, *keys: str) -> None:
    """Each key in [0, 1): dropout rates and the like."""
    for key in keys:
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise ValueError(f"{section}.{key} must be in [0, 1), got {getattr(cfg, key)}")

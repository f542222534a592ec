"""Raw config data (a file's, a run's recorded config) into typed sections: unknown keys refused, every value of its
field's type, each problem a one-line ConfigError naming the source and the dotted key."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from mbpo_cli.config.errors import ConfigError, clip, shown

MAX_INT = 2**53 - 1
"""Largest integer a config accepts anywhere (exact in JSON, far inside SQLite's 64-bit integers)."""


def coerce_section(cls: type, data: Any, source: str, prefix: str) -> Any:
    """The dataclass `cls` (a section, or the whole Config with `prefix` "") from raw `data`: every key known,
    every value of its field's type; ConfigError naming `source` and the dotted key otherwise."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {describe(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        raise ConfigError(
            f"{source}: {prefix}{clip(str(unknown[0]))}: unknown key (known: {', '.join(sorted(names))})"
        )
    values: dict[str, Any] = {}
    for key, raw in data.items():
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[key] = coerce_section(hint, raw, source, f"{prefix}{key}.")
        else:
            values[key] = _coerce(raw, hint, f"{source}: {prefix}{key}")
    return cls(**values)


def describe(value: Any) -> str:
    """A user's value as an error names it: its type and its value (or "a mapping")."""
    return f"{type(value).__name__} {shown(value)}" if not isinstance(value, dict) else "a mapping"


def _coerce(value: Any, hint: Any, where: str) -> Any:  # noqa: C901 - one branch per supported type
    """`value` as a value of type `hint` (an int given for a float becomes a float, a list for a tuple a tuple);
    ConfigError naming `where` otherwise."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, args))}, got {shown(value)}")
        return value
    if hint is Any:
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a section inside a list (`env.wrappers`)
        source, _, key = where.rpartition(": ")
        return coerce_section(hint, value, source, f"{key}.")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {describe(value)}")
        if abs(value) > MAX_INT:
            raise ConfigError(f"{where}: must be at most {MAX_INT:,} in size, got {shown(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {describe(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):  # a list of sections
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {describe(value)}")
        return {str(k): v for k, v in value.items()}
    raise ConfigError(f"{where}: unsupported type {hint}")

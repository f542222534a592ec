"""Raw config data as nested mappings: one merged over another, the dotted keys where two differ, the dotted keys
one sets. `env.kwargs` is a value of its own throughout: replaced whole, compared whole, never descended into."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

LEAF_MAPPINGS = ("kwargs",)
"""Keys whose mapping is one value (`env.kwargs`: keyword arguments for `gymnasium.make`), not a section."""


def is_section(key: str, value: Any) -> bool:
    """Whether `value` under `key` is a section of keys (merged and compared key by key)."""
    return isinstance(value, Mapping) and key not in LEAF_MAPPINGS


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` applied on `base`, section by section (env.kwargs is replaced, not merged)."""
    merged = dict(base)
    for key, value in over.items():
        if is_section(key, value) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two config dicts: {key: (a_value, b_value)}."""
    diff: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping) and is_section(key, va):
            diff.update(config_diff(va, vb, f"{prefix}{key}."))
        elif va != vb:
            diff[f"{prefix}{key}"] = (va, vb)
    return diff


def leaf_keys(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The dotted keys of the values `data` sets (a section's keys, not the section itself)."""
    for key, value in data.items():
        if is_section(str(key), value):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"

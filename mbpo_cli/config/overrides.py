"""Values set on the command line over a config: `--set KEY=VALUE` (the value read as YAML) and typed flags, each
an :class:`Override` that says where it came from, applied to raw config data once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mbpo_cli.config.errors import ConfigError, clip
from mbpo_cli.config.mappings import deep_merge
from mbpo_cli.config.migrate import current_key
from mbpo_cli.config.provenance import Origin, OriginKind
from mbpo_cli.config.yaml_reader import MAX_YAML_DEPTH, YamlRefused, load_user_yaml

SET = Origin(OriginKind.SET, "--set")
"""The origin of a `--set` value."""


@dataclass(frozen=True)
class Override:
    """One value set over a config: the path of its key (today's name), the value as the schema will coerce it,
    and where it came from (`--set`, or a flag such as `--seed`)."""

    path: tuple[str, ...]
    value: Any
    origin: Origin

    @property
    def key(self) -> str:
        """The dotted key."""
        return ".".join(self.path)


def flag(path: str, value: Any, name: str) -> Override:
    """The override of dotted `path` that flag `name` (`--seed`) stands for, its value already typed."""
    return Override(tuple(path.split(".")), value, Origin(OriginKind.FLAG, name))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`'model.ensemble_size=5'` -> (['model', 'ensemble_size'], 5); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {clip(text)}: expected KEY=VALUE, e.g. model.ensemble_size=5")
    try:
        value = load_user_yaml(raw) if raw.strip() else None
    except YamlRefused as err:
        raise ConfigError(f"--set {clip(key.strip())}: {err.problem}") from None
    except yaml.YAMLError:
        value = raw
    path = key.strip().split(".")
    if len(path) > MAX_YAML_DEPTH:
        raise ConfigError(f"--set {clip(key.strip())}: nested more than {MAX_YAML_DEPTH} levels deep")
    return path, value


def parse_sets(texts: Iterable[str]) -> list[Override]:
    """`--set KEY=VALUE` texts as overrides, each key under its name today (`sac.updates_per_step` is
    `agent.updates_per_step`, see `mbpo_cli.config.migrate`)."""
    overrides = []
    for text in texts:
        path, value = parse_override(text)
        overrides.append(Override(current_key(path), value, SET))
    return overrides


def apply(data: Mapping[str, Any], overrides: Iterable[Override]) -> dict[str, Any]:
    """Raw config `data` with each override's value put at its key, in order (validated later); `data` is left
    as it is."""
    result = deep_merge({}, data)
    for override in overrides:
        node = result
        for part in override.path[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[override.path[-1]] = override.value
    return result


def apply_overrides(data: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Dotted `KEY=VALUE` overrides applied to a raw config mapping (validated later).

    An override of a key by its old name (`sac.updates_per_step`, see `mbpo_cli.config.migrate`) overrides the
    key under its new name.
    """
    return apply(data, parse_sets(overrides))

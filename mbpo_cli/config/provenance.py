"""Where each value of a resolved config came from: the schema's default, a bundled preset, a config file, the
defaults of `--env`, a `--set`, or a flag such as `--device`."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mbpo_cli.config.mappings import is_section, leaf_keys
from mbpo_cli.config.migrate import current_key


class OriginKind(enum.Enum):
    """What set a value."""

    DEFAULT = "default"
    PRESET = "preset"
    FILE = "file"
    ENV = "env"
    SET = "set"
    FLAG = "flag"


@dataclass(frozen=True)
class Origin:
    """What set a value, and which one."""

    kind: OriginKind
    name: str
    """The preset's name, the file's path, `--env ENV_ID`, `--set`, the flag (`--device`), or `default`."""


DEFAULT = Origin(OriginKind.DEFAULT, "default")
"""The origin of a value that nothing set: the schema's default."""


@dataclass(frozen=True)
class Provenance:
    """The origin of each value a resolved config was given, by dotted key (a key absent: the default)."""

    origins: Mapping[str, Origin] = field(default_factory=dict)

    def of(self, key: str) -> Origin:
        """The origin of the value of dotted `key`."""
        return self.origins.get(key, DEFAULT)

    def with_data(self, data: Mapping[str, Any], origin: Origin) -> Provenance:
        """This provenance after raw config `data` from `origin` was merged over the values (section by section)."""
        origins = dict(self.origins)
        for key in leaf_keys(data):
            origins[".".join(current_key(key.split(".")))] = origin
        return Provenance(origins)

    def with_value(self, path: Iterable[str], value: Any, origin: Origin) -> Provenance:
        """This provenance after `value` from `origin` replaced the value (or whole section) at `path`."""
        key = ".".join(path)
        origins = {k: o for k, o in self.origins.items() if k != key and not k.startswith(f"{key}.")}
        if is_section(key.rpartition(".")[2], value):
            origins.update({f"{key}.{leaf}": origin for leaf in leaf_keys(value)})
        else:
            origins[key] = origin
        return Provenance(origins)

"""Config files: the bundled presets, and reading a file with its `base:` chain (a preset name, or a path relative
to the file) into one raw mapping, remembering which file set what and the nearest preset it builds on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import yaml

from mbpo_cli.config.errors import ConfigError, clip, shown
from mbpo_cli.config.mappings import deep_merge
from mbpo_cli.config.provenance import Origin, OriginKind, Provenance
from mbpo_cli.config.yaml_reader import YamlRefused, load_user_yaml

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PRESETS_DIRS = (PACKAGE_DIR / "presets", PACKAGE_DIR.parent / "presets")
"""Bundled presets: inside the installed package (the wheel), or beside it in a source checkout."""


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    names: set[str] = set()
    for folder in PRESETS_DIRS:
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def preset_path(name: str) -> Path:
    """The file of a bundled preset, or a ConfigError listing the known ones."""
    for folder in PRESETS_DIRS:
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path
    raise ConfigError(f"unknown preset {shown(name)} (known: {', '.join(preset_names())})")


@dataclass(frozen=True)
class Layer:
    """One file of a `base:` chain: the values it sets itself (its `base:` key removed) and where it came from (a
    preset when it was named by its preset name, else the file)."""

    path: Path
    data: dict[str, Any]
    origin: Origin


@dataclass(frozen=True)
class ConfigFile:
    """A config file as read: its `base:` chain's files, the chain's first base first, the file itself last."""

    layers: tuple[Layer, ...]

    @property
    def path(self) -> Path:
        """The file itself (the one asked for)."""
        return self.layers[-1].path

    @property
    def data(self) -> dict[str, Any]:
        """The raw config: each file merged over its base, section by section."""
        return reduce(deep_merge, (layer.data for layer in self.layers), {})

    @property
    def provenance(self) -> Provenance:
        """Which file of the chain set each value."""
        return reduce(lambda p, layer: p.with_data(layer.data, layer.origin), self.layers, Provenance())

    @property
    def base_preset(self) -> str | None:
        """The preset the file builds on through its `base:` chain: the nearest one named, if any."""
        bases = [layer.origin for layer in self.layers[:-1] if layer.origin.kind is OriginKind.PRESET]
        return bases[-1].name if bases else None


def read_preset(name: str) -> ConfigFile:
    """A bundled preset, read."""
    return _read_chain(preset_path(name), Origin(OriginKind.PRESET, name), seen=())


def read_config_file(path: Path) -> ConfigFile:
    """A config file, read with its `base:` chain."""
    return _read_chain(path, Origin(OriginKind.FILE, str(path)), seen=())


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from `path`, following `base:` (a preset name or a path relative to the file)."""
    return read_config_file(path).data


def _read_chain(path: Path, origin: Origin, seen: tuple[Path, ...]) -> ConfigFile:
    """The file at `path` (reached as `origin`) and the files of its `base:` chain."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: base: cycle through {' -> '.join(str(p) for p in seen)}")
    data = _read_mapping(path)
    base = data.pop("base", None)
    layer = Layer(path, data, origin)
    if base is None:
        return ConfigFile((layer,))
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a preset name or a file path")
    by_path = base.endswith((".yaml", ".yml"))
    try:
        candidate = (path.parent / base) if by_path else preset_path(base)
    except ConfigError as err:
        raise ConfigError(f"{path}: base: {err}") from None
    if not candidate.is_file():
        raise ConfigError(f"{path}: base: no such config file {candidate}")
    base_origin = Origin(OriginKind.FILE, str(candidate)) if by_path else Origin(OriginKind.PRESET, base)
    return ConfigFile((*_read_chain(candidate, base_origin, (*seen, path.resolve())).layers, layer))


def _read_mapping(path: Path) -> dict[str, Any]:
    """The mapping of sections in one YAML file (an empty file is an empty mapping); one-line ConfigErrors."""
    try:
        data = load_user_yaml(path.read_text())
    except YamlRefused as err:
        line = err.problem_mark.line + 1 if err.problem_mark is not None else "?"
        raise ConfigError(f"{path}: line {line}: {err.problem}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(err, "problem", None) or err).strip().splitlines()
        raise ConfigError(f"{path}: invalid YAML{where}: {clip(problem[0]) if problem else 'parse error'}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data

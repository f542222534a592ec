"""Loading a run configuration in one call (a file with overrides; a config with overrides), and the config layer's
names as callers outside `mbpo_cli.config` import them (each defined in the module that owns it, see the package)."""

from __future__ import annotations

from pathlib import Path

from mbpo_cli.config.env_defaults import TaskFacts, env_defaults
from mbpo_cli.config.errors import ConfigError, clip
from mbpo_cli.config.files import preset_names, preset_path, read_yaml
from mbpo_cli.config.mappings import config_diff
from mbpo_cli.config.overrides import apply, apply_overrides, parse_override, parse_sets
from mbpo_cli.config.resolve import exploration_warning, resolve_config
from mbpo_cli.config.schema import Config
from mbpo_cli.config.validation import build_config

__all__ = ["ConfigError", "TaskFacts", "apply_overrides", "build_config", "clip", "config_diff", "env_defaults",
           "exploration_warning", "load_config", "parse_override", "preset_names", "preset_path", "read_yaml",
           "resolve_config", "with_overrides"]


def load_config(path: Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a config file."""
    return build_config(apply_overrides(read_yaml(path), overrides or []), str(path))


def with_overrides(config: Config, overrides: list[str], source: str = "--set") -> Config:
    """A new validated Config: `config` with dotted overrides applied."""
    return build_config(apply(config.to_dict(), parse_sets(overrides)), source)

"""Configs written before today's layout (runs in older registries, old files) read in today's layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mbpo_cli.config.errors import ConfigError, shown
from mbpo_cli.config.mappings import deep_merge

LEGACY_AGENT_KEYS = ("updates_per_step", "batch_size", "real_ratio", "gamma", "buffer_size")
"""Keys that moved from the `sac` section to `agent` when other base agents arrived."""


def current_key(path: Sequence[str]) -> tuple[str, ...]:
    """The path of a key under its name today: `sac.<key>` of :data:`LEGACY_AGENT_KEYS` is `agent.<key>`."""
    if len(path) == 2 and path[0] == "sac" and path[1] in LEGACY_AGENT_KEYS:
        return ("agent", path[1])
    return tuple(path)


def migrate(data: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Configs written before the `agent` section (runs in older registries, old files) in today's layout.

    `sac.<key>` for the keys of :data:`LEGACY_AGENT_KEYS` becomes `agent.<key>`, and `algo: sac` becomes
    `algo: model_free` with `agent.name: sac`. A key given under both names with different values is an error.
    """
    result = deep_merge({}, data)
    sac, agent = result.get("sac"), result.get("agent")
    if isinstance(sac, Mapping) and any(k in sac for k in LEGACY_AGENT_KEYS):
        agent = dict(agent) if isinstance(agent, Mapping) else {}
        sac = dict(sac)
        for key in LEGACY_AGENT_KEYS:
            if key not in sac:
                continue
            value = sac.pop(key)
            if key in agent and agent[key] != value:
                raise ConfigError(f"{source}: sac.{key}: the old name of agent.{key}, which is set to "
                                  f"{shown(agent[key])}; set only agent.{key}")
            agent[key] = value
        result["sac"], result["agent"] = sac, agent
    if result.get("algo") == "sac":
        agent = dict(result.get("agent") or {})
        if agent.get("name", "sac") != "sac":
            raise ConfigError(f"{source}: algo: sac means SAC without a model, but agent.name is "
                              f"{shown(agent['name'])}; use algo: model_free")
        result["algo"], result["agent"] = "model_free", {**agent, "name": "sac"}
    return result

"""A study's search space: each searched config key (:class:`Param`: a float or int range, or a list of choices),
how a study file's ``space:`` is read, the points of a grid search over it, its check against the fixed config, and
how a key's value is set in a config mapping and shown."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mbpo_cli.config.errors import ConfigError, clip, shown
from mbpo_cli.config.schema import Config
from mbpo_cli.config.validation import build_config
from mbpo_cli.sweeps.tune.checks import integer, number

MAX_GRID = 10_000
"""Most points a grid search may hold."""


class ParamType(str, Enum):
    """How a config key's value is searched."""

    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"


_SCALARS = (type(None), bool, int, float, str)
"""The values Optuna's categorical distribution takes as they are (others are passed as their JSON text)."""


@dataclass(frozen=True)
class Param:
    """One searched config key: a float or int range (``log``: sampled in log space; ``step``: on a grid), or a
    list of choices (any YAML values: a list such as a rollout schedule, a mapping such as env.kwargs)."""

    key: str
    """The dotted config key (``sac.lr``), also the parameter's name in Optuna."""
    type: ParamType
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def encoded(self) -> bool:
        """Whether the choices go to Optuna as their JSON text (some choice is a list or a mapping)."""
        return any(not isinstance(c, _SCALARS) for c in self.choices)

    def optuna_choices(self) -> list[Any]:
        """The choices as Optuna's categorical distribution holds them."""
        return [json.dumps(c, sort_keys=True) for c in self.choices] if self.encoded else list(self.choices)

    def decode(self, value: Any) -> Any:
        """A value as Optuna gives it back -> the config value."""
        return json.loads(value) if self.type is ParamType.CATEGORICAL and self.encoded else value

    def grid(self) -> list[Any] | None:
        """Every value of the parameter as Optuna's grid sampler takes them, or None for a continuous range."""
        if self.type is ParamType.CATEGORICAL:
            return self.optuna_choices()
        assert self.low is not None and self.high is not None
        if self.type is ParamType.INT:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [self.low + i * self.step for i in range(count)]

    def extremes(self) -> list[Any]:
        """The values that bound the parameter (its range's ends, or every choice): each must be a valid config."""
        if self.type is ParamType.CATEGORICAL:
            return list(self.choices)
        if self.type is ParamType.INT:
            return [int(self.low or 0), int(self.high or 0)]
        return [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the group's info)."""
        if self.type is ParamType.CATEGORICAL:
            return {"key": self.key, "type": self.type.value, "choices": list(self.choices)}
        return {"key": self.key, "type": self.type.value, "low": self.low, "high": self.high, "log": self.log,
                "step": self.step}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Param:
        """The parameter stored by :meth:`to_dict`."""
        kind = ParamType(data["type"])
        if kind is ParamType.CATEGORICAL:
            return cls(data["key"], kind, choices=tuple(data["choices"]))
        return cls(data["key"], kind, data["low"], data["high"], bool(data["log"]), data["step"])


def read_space(raw: Any, where: str) -> tuple[Param, ...]:
    """The parameters of a study file's ``space:`` mapping (config key -> range or choices)."""
    if raw is None:
        raise ConfigError(f"{where}: space: missing; e.g. space: {{sac.lr: {{type: float, low: 1.0e-4, high: "
                          "1.0e-3, log: true}}")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: space: expected a mapping of config keys to their ranges, got {shown(raw)}")
    return tuple(_param(key, value, f"{where}: space.{clip(key, 80)}") for key, value in raw.items())


PARAM_KEYS = {ParamType.FLOAT: ("type", "low", "high", "log", "step"),
              ParamType.INT: ("type", "low", "high", "log", "step"),
              ParamType.CATEGORICAL: ("type", "choices")}
"""The keys of each kind of range."""


def _param(key: str, raw: Any, where: str) -> Param:
    if not key or any(not part.isidentifier() for part in key.split(".")):
        raise ConfigError(f"{where}: expected a dotted config key such as sac.lr")
    if isinstance(raw, list):
        raw = {"type": "categorical", "choices": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected {{type: float|int|categorical, ...}} or a list of choices, got "
                          f"{shown(raw)}")
    try:
        kind = ParamType(raw.get("type"))
    except ValueError:
        raise ConfigError(f"{where}: type: expected float, int or categorical, got {shown(raw.get('type'))}") from None
    unknown = sorted(set(raw) - set(PARAM_KEYS[kind]))
    if unknown:
        raise ConfigError(f"{where}: {clip(str(unknown[0]))}: unknown key for type {kind.value} (known: "
                          f"{', '.join(PARAM_KEYS[kind])})")
    if kind is ParamType.CATEGORICAL:
        return _categorical(key, raw.get("choices"), where)
    return _range(key, kind, raw, where)


def _categorical(key: str, choices: Any, where: str) -> Param:
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}: choices: expected a non-empty list, got {shown(choices)}")
    texts = [json.dumps(c, sort_keys=True) for c in choices]
    for i, text in enumerate(texts):
        if text in texts[:i]:
            raise ConfigError(f"{where}: choices: {clip(text)} is given twice")
    return Param(key, ParamType.CATEGORICAL, choices=tuple(choices))


def _range(key: str, kind: ParamType, raw: Mapping[str, Any], where: str) -> Param:
    for name in ("low", "high"):
        if name not in raw:
            raise ConfigError(f"{where}: {name}: missing (a {kind.value} range needs low and high)")
    low: float
    high: float
    if kind is ParamType.INT:
        low = integer(raw["low"], f"{where}: low", -(2**53), 2**53)
        high = integer(raw["high"], f"{where}: high", -(2**53), 2**53)
    else:
        low, high = number(raw["low"], f"{where}: low"), number(raw["high"], f"{where}: high")
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, got {low:g} and {high:g} (a fixed value goes in the "
                          "base config or --set)")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log: expected true or false, got {shown(log)}")
    if log and low <= 0:
        raise ConfigError(f"{where}: low must be > 0 with log: true, got {low:g}")
    step = raw.get("step")
    if step is not None:
        if log:
            raise ConfigError(f"{where}: step and log: true cannot go together (Optuna samples one or the other)")
        step = (integer(step, f"{where}: step", 1, 2**53) if kind is ParamType.INT
                else number(step, f"{where}: step"))
        if step <= 0 or step > high - low:
            raise ConfigError(f"{where}: step must be > 0 and at most high - low, got {step:g}")
    return Param(key, kind, low, high, log, step)


def grid_size(space: Sequence[Param], where: str) -> int:
    """The number of points of a grid search over ``space``; ConfigError for a continuous range or too many."""
    size = 1
    for param in space:
        points = param.grid()
        if points is None:
            raise ConfigError(f"{where}: space.{param.key}: sampler grid needs choices, an int range or a float "
                              "range with a step")
        size *= len(points)
        if size > MAX_GRID:
            raise ConfigError(f"{where}: space: sampler grid: more than {MAX_GRID:,} points")
    return size


def check_space(space: Sequence[Param], base: Config, where: str) -> None:
    """ConfigError unless each key of the space names a config key whose every bounding value is valid on its own
    (the ends of a range, each choice); a combination the config refuses only fails the trial that draws it."""
    for param in space:
        for value in param.extremes():
            data = base.to_dict()
            set_dotted(data, param.key, value)
            try:
                build_config(data, "")
            except ConfigError as error:
                reason = str(error).removeprefix(": ")
                raise ConfigError(f"{where}: space.{param.key}: {describe_value(value)}: {reason}") from None


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` of a config mapping to ``value`` (a copy of it), creating sections on the way."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def describe_values(values: Mapping[str, Any]) -> str:
    """``sac.lr=0.0003, agent.updates_per_step=10`` (each value cut to 40 characters)."""
    return ", ".join(f"{key}={describe_value(v)}" for key, v in values.items())


def describe_value(value: Any) -> str:
    """A parameter's value as tables show it: a float with 4 significant digits, other values as JSON."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return clip(json.dumps(value), 40)

"""A tuning study's definition (`mbpo tune`): the search space over config keys, the objective, the sampler, the
pruner and the number of trials, read from a YAML file and validated before anything runs.

Every problem is one line naming the file and the key (``study.yaml: space.sac.lr: low must be > 0 with log:
true``). The definition round-trips through plain data (the registry group's info), so that `mbpo tune --resume
STUDY` rebuilds it. Nothing here imports Optuna: `mbpo_cli.sweeps.tune` turns the definition into Optuna's sampler,
pruner and suggestions.

A study file::

    base: inverted_pendulum              # a preset, or a config file (relative to this file); or --preset/--config
    space:
      sac.lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
      agent.updates_per_step: {type: int, low: 5, high: 20}
      rollout.schedule: {type: categorical, choices: [[1, 15, 1, 1], [1, 15, 1, 5]]}
      sac.hidden: [128, 256]             # a list: categorical
    metric: eval_return                  # the default
    last: 3                              # the objective: mean of the last 3 evaluations (default 1, the final one)
    direction: maximize                  # the default
    trials: 20
    sampler: {type: tpe, seed: 0}        # tpe (default), random or grid
    pruner: {type: median, startup_trials: 5, warmup_steps: 0}   # median (default), threshold or none
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.errors import ConfigError, clip, shown
from mbpo_cli.config.files import preset_path, read_yaml
from mbpo_cli.config.mappings import config_diff
from mbpo_cli.config.schema import Config
from mbpo_cli.config.sections.train import MAX_SEED
from mbpo_cli.config.validation import build_config
from mbpo_cli.config.yaml_reader import YamlRefused, load_user_yaml
from mbpo_cli.runs.registry import sanitize_name

STUDY_VERSION = 1
"""Version of the plain data a study's definition is stored as (the registry group's info)."""
MAX_TRIALS = 10_000
"""Most trials a study may ask for."""
MAX_LAST = 1000
"""Most evaluations the objective may average."""
MAX_GRID = 10_000
"""Most points a grid search may hold."""
DEFAULT_TRIALS = 20
"""Trials of a study whose file and command line name none (a grid search: its number of points)."""


class ParamType(str, Enum):
    """How a config key's value is searched."""

    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"


class Direction(str, Enum):
    """Whether the objective is to be maximized or minimized."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class SamplerType(str, Enum):
    """Optuna's samplers that `mbpo tune` offers."""

    TPE = "tpe"
    RANDOM = "random"
    GRID = "grid"


class PrunerType(str, Enum):
    """Optuna's pruners that `mbpo tune` offers."""

    MEDIAN = "median"
    THRESHOLD = "threshold"
    NONE = "none"


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


@dataclass(frozen=True)
class Objective:
    """What a trial is scored by: the mean of the last ``last`` values of the metric ``metric`` a run records (each
    evaluation's, for ``eval_return``), maximized or minimized. The same mean, taken at each evaluation, is what
    the pruner sees as the trial goes."""

    metric: str = metric_keys.EVAL_RETURN
    last: int = 1
    direction: Direction = Direction.MAXIMIZE

    def running(self, values: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
        """(step, objective so far) after each (step, value) of the metric, in order."""
        result = []
        for i, (step, _) in enumerate(values):
            window = [v for _, v in values[max(0, i + 1 - self.last): i + 1]]
            result.append((step, sum(window) / len(window)))
        return result

    def final(self, values: Sequence[tuple[int, float]]) -> float | None:
        """The trial's score from all the metric's values (None when there are none)."""
        running = self.running(values)
        return running[-1][1] if running else None

    def describe(self) -> str:
        """``eval_return`` or ``mean of the last 3 eval_return``."""
        return self.metric if self.last == 1 else f"mean of the last {self.last} {self.metric}"


@dataclass(frozen=True)
class SamplerSpec:
    """The sampler: TPE (seeded; ``startup_trials`` random trials first), random, or a grid over every point."""

    type: SamplerType = SamplerType.TPE
    seed: int = 0
    startup_trials: int = 10


@dataclass(frozen=True)
class PrunerSpec:
    """The pruner, deciding at each evaluation (the step is the run's env step) whether a trial stops: ``median``
    (below the median of earlier trials at the same step, once ``startup_trials`` trials have finished and after
    ``warmup_steps``), ``threshold`` (outside [``lower``, ``upper``] after ``warmup_steps``), or ``none``."""

    type: PrunerType = PrunerType.MEDIAN
    startup_trials: int = 5
    warmup_steps: int = 0
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class StudyFile:
    """A study file as read: its base (a preset or a config file, or None) and the study's settings."""

    path: Path
    base: str | None
    space: tuple[Param, ...]
    objective: Objective
    trials: int | None
    sampler: SamplerSpec
    pruner: PrunerSpec

    def base_source(self) -> tuple[str | None, Path | None]:
        """(preset, config file) that ``base:`` names (a file relative to the study file)."""
        if self.base is None:
            return None, None
        if self.base.endswith((".yaml", ".yml")):
            return None, self.path.parent / self.base
        return self.base, None


@dataclass(frozen=True)
class StudySpec:
    """Everything needed to run (and rerun) a study."""

    name: str
    """The study's name: its registry group and its Optuna study."""
    space: tuple[Param, ...]
    objective: Objective
    trials: int
    sampler: SamplerSpec
    pruner: PrunerSpec
    base: dict[str, Any]
    """The fixed part: the resolved config every trial starts from (plain data)."""
    preset: str | None
    """The preset the fixed part builds on (a trial's config file names it as its ``base:``)."""
    source: dict[str, Any] = field(default_factory=dict)
    """How the fixed part was chosen (study file, preset, config, env, sets, steps, device), for the record."""

    def trial_config(self, values: Mapping[str, Any]) -> Config:
        """The validated config of a trial with these values of the space's keys (ConfigError for a combination the
        config refuses)."""
        data = copy.deepcopy(self.base)
        for key, value in values.items():
            set_dotted(data, key, value)
        return build_config(data, f"trial {describe_values(values)}")

    def with_trials(self, trials: int) -> StudySpec:
        """The same study asking for ``trials`` trials in all."""
        check_trials(trials, "--trials", self)
        return replace(self, trials=trials)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the group's info (and ``--json``)."""
        return {
            "study_version": STUDY_VERSION, "name": self.name, "space": [p.to_dict() for p in self.space],
            "metric": self.objective.metric, "last": self.objective.last,
            "direction": self.objective.direction.value, "trials": self.trials,
            "sampler": {"type": self.sampler.type.value, "seed": self.sampler.seed,
                        "startup_trials": self.sampler.startup_trials},
            "pruner": {"type": self.pruner.type.value, "startup_trials": self.pruner.startup_trials,
                       "warmup_steps": self.pruner.warmup_steps, "lower": self.pruner.lower,
                       "upper": self.pruner.upper},
            "base": self.base, "preset": self.preset, "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudySpec:
        """The definition stored by :meth:`to_dict`; the fixed config is validated again."""
        if data.get("study_version") != STUDY_VERSION:
            raise ConfigError(f"study {data.get('name')!r}: no study definition (version {STUDY_VERSION}) in its "
                              "group's info")
        sampler, pruner = data["sampler"], data["pruner"]
        return cls(
            name=data["name"], space=tuple(Param.from_dict(p) for p in data["space"]),
            objective=Objective(data["metric"], int(data["last"]), Direction(data["direction"])),
            trials=int(data["trials"]),
            sampler=SamplerSpec(SamplerType(sampler["type"]), int(sampler["seed"]), int(sampler["startup_trials"])),
            pruner=PrunerSpec(PrunerType(pruner["type"]), int(pruner["startup_trials"]), int(pruner["warmup_steps"]),
                              pruner["lower"], pruner["upper"]),
            base=build_config(data["base"], f"study {data['name']}").to_dict(), preset=data["preset"],
            source=dict(data.get("source") or {}))


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


# ---------------------------------------------------------------------------------------------
# Reading a study file
# ---------------------------------------------------------------------------------------------

FILE_KEYS = ("base", "space", "metric", "last", "direction", "trials", "sampler", "pruner")
"""The keys a study file may hold."""


def read_study_file(path: Path) -> StudyFile:
    """The study file at ``path``, validated on its own (the space against a config later: :func:`check_space`)."""
    data = _load(path)
    where = str(path)
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: {clip(str(unknown[0]))}: unknown key (known: {', '.join(FILE_KEYS)})")
    base = data.get("base")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{where}: base: expected a preset name or a config file, got {shown(base)}")
    space = _space(data.get("space"), where)
    sampler = _sampler(data.get("sampler"), where)
    trials = data.get("trials")
    if trials is not None:
        _integer(trials, f"{where}: trials", 1, MAX_TRIALS)
    study = StudyFile(path=path, base=base, space=space, objective=_objective(data, where), trials=trials,
                      sampler=sampler, pruner=_pruner(data.get("pruner"), where))
    if sampler.type is SamplerType.GRID:
        grid_size(space, where)
    return study


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    try:
        data = load_user_yaml(path.read_text())
    except YamlRefused as error:
        line = error.problem_mark.line + 1 if error.problem_mark is not None else "?"
        raise ConfigError(f"{path}: line {line}: {error.problem}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(error, "problem", None) or error).strip().splitlines()
        raise ConfigError(f"{path}: invalid YAML{at}: {clip(problem[0]) if problem else 'parse error'}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a space:, got {type(data).__name__}")
    return data


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {shown(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{where}: must be in [{low:,}, {high:,}], got {shown(value)}")
    return value


def _number(value: Any, where: str) -> float:
    """A finite number; YAML's ``1e-4`` (a string to YAML 1.1, which wants ``1.0e-4``) is read as one too."""
    if isinstance(value, str):
        with suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {shown(value)}")
    return value


def _space(raw: Any, where: str) -> tuple[Param, ...]:
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
        low = _integer(raw["low"], f"{where}: low", -(2**53), 2**53)
        high = _integer(raw["high"], f"{where}: high", -(2**53), 2**53)
    else:
        low, high = _number(raw["low"], f"{where}: low"), _number(raw["high"], f"{where}: high")
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
        step = (_integer(step, f"{where}: step", 1, 2**53) if kind is ParamType.INT
                else _number(step, f"{where}: step"))
        if step <= 0 or step > high - low:
            raise ConfigError(f"{where}: step must be > 0 and at most high - low, got {step:g}")
    return Param(key, kind, low, high, log, step)


def _objective(data: Mapping[str, Any], where: str) -> Objective:
    metric = data.get("metric", metric_keys.EVAL_RETURN)
    if not isinstance(metric, str):
        raise ConfigError(f"{where}: metric: expected a metric key such as eval_return, got {shown(metric)}")
    key = _metric_key(metric)
    if metric_keys.metric(key) is None:
        raise ConfigError(f"{where}: metric: unknown metric {shown(metric)} (e.g. {metric_keys.EVAL_RETURN}; "
                          "`mbpo runs metrics RUN` lists a run's)")
    last = _integer(data.get("last", 1), f"{where}: last", 1, MAX_LAST)
    direction = data.get("direction", Direction.MAXIMIZE.value)
    try:
        return Objective(key, last, Direction(direction))
    except ValueError:
        raise ConfigError(f"{where}: direction: expected maximize or minimize, got {shown(direction)}") from None


def _metric_key(text: str) -> str:
    """A metric's key from the key itself or its TensorBoard tag (``eval/eval_return``)."""
    _, slash, key = text.partition("/")
    return key if slash and metric_keys.tensorboard_tag(key) == text else text


def _typed(raw: Any, where: str, what: str, enum: type[Enum], allowed: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """(the enum member, the other settings) of a sampler or pruner given as ``NAME`` or ``{type: NAME, ...}``."""
    settings = {"type": raw} if isinstance(raw, str) else raw
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: {what}: expected a name or {{type: NAME, ...}}, got {shown(raw)}")
    names = ", ".join(m.value for m in enum)
    try:
        kind = enum(settings.get("type"))
    except ValueError:
        raise ConfigError(f"{where}: {what}.type: expected {names}, got {shown(settings.get('type'))}") from None
    unknown = sorted(set(settings) - {"type", *allowed})
    if unknown:
        raise ConfigError(f"{where}: {what}.{clip(str(unknown[0]))}: unknown key (known: type, "
                          f"{', '.join(allowed)})")
    return kind, settings


def _sampler(raw: Any, where: str) -> SamplerSpec:
    if raw is None:
        return SamplerSpec()
    kind, settings = _typed(raw, where, "sampler", SamplerType, ("seed", "startup_trials"))
    seed = _integer(settings.get("seed", 0), f"{where}: sampler.seed", 0, MAX_SEED)
    startup = _integer(settings.get("startup_trials", 10), f"{where}: sampler.startup_trials", 0, MAX_TRIALS)
    if kind is not SamplerType.TPE and "startup_trials" in settings:
        raise ConfigError(f"{where}: sampler.startup_trials: a TPE setting (the sampler is {kind.value})")
    return SamplerSpec(kind, seed, startup)


def _pruner(raw: Any, where: str) -> PrunerSpec:
    if raw is None:
        return PrunerSpec()
    kind, settings = _typed(raw, where, "pruner", PrunerType,
                            ("startup_trials", "warmup_steps", "lower", "upper"))
    allowed = {PrunerType.MEDIAN: {"startup_trials", "warmup_steps"},
               PrunerType.THRESHOLD: {"lower", "upper", "warmup_steps"}, PrunerType.NONE: set()}[kind]
    for name in settings:
        if name != "type" and name not in allowed:
            raise ConfigError(f"{where}: pruner.{name}: not a setting of the {kind.value} pruner")
    startup = _integer(settings.get("startup_trials", 5), f"{where}: pruner.startup_trials", 0, MAX_TRIALS)
    warmup = _integer(settings.get("warmup_steps", 0), f"{where}: pruner.warmup_steps", 0, 2**53)
    lower = None if settings.get("lower") is None else _number(settings["lower"], f"{where}: pruner.lower")
    upper = None if settings.get("upper") is None else _number(settings["upper"], f"{where}: pruner.upper")
    if kind is PrunerType.THRESHOLD and lower is None and upper is None:
        raise ConfigError(f"{where}: pruner: the threshold pruner needs lower, upper or both")
    if lower is not None and upper is not None and lower > upper:
        raise ConfigError(f"{where}: pruner: lower {lower:g} is above upper {upper:g}")
    return PrunerSpec(kind, startup, warmup, lower, upper)


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


def check_trials(trials: int, where: str, spec: StudySpec | None = None, grid: int | None = None) -> None:
    """ConfigError unless ``trials`` is in [1, MAX_TRIALS] and, for a grid search, at most its number of points."""
    _integer(trials, where, 1, MAX_TRIALS)
    if grid is None and spec is not None and spec.sampler.type is SamplerType.GRID:
        grid = grid_size(spec.space, where)
    if grid is not None and trials > grid:
        raise ConfigError(f"{where}: {trials} trials, but the grid has {grid} points (each is tried once)")


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


def build_spec(study: StudyFile, base: Config, preset: str | None, source: dict[str, Any], trials: int | None,
               name: str | None) -> StudySpec:
    """The validated definition of a new study: the file's space checked against the fixed config ``base``; the
    trials from ``--trials``, else the file, else :data:`DEFAULT_TRIALS` (a grid: its number of points)."""
    where = str(study.path)
    check_space(study.space, base, where)
    grid = grid_size(study.space, where) if study.sampler.type is SamplerType.GRID else None
    count = trials if trials is not None else study.trials
    if count is None:
        count = grid if grid is not None else DEFAULT_TRIALS
    check_trials(count, "--trials" if trials is not None else f"{where}: trials", grid=grid)
    spec = StudySpec(name="", space=study.space, objective=study.objective, trials=count, sampler=study.sampler,
                     pruner=study.pruner, base=base.to_dict(), preset=preset, source=source)
    return replace(spec, name=sanitize_name(name or default_name(study.path, spec)))


def default_name(path: Path, spec: StudySpec) -> str:
    """``<study file stem>-tune-<short hash>``: the hash covers what defines the study (space, objective, sampler,
    pruner, trials and fixed config), so the same command run again names the existing study (which it then
    refuses, pointing at ``--resume``)."""
    data = spec.to_dict()
    defining = {k: v for k, v in data.items() if k not in ("name", "source")}
    digest = hashlib.sha1(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{path.stem.lower()}-tune-{digest}"


def best_config_yaml(config: Config, preset: str | None) -> dict[str, Any]:
    """A trial's config as the YAML `mbpo train --config` takes: ``base: PRESET`` and the keys that differ from the
    preset, or the whole config where there is no preset."""
    data = config.to_dict()
    if preset is None:
        return data
    reference = build_config(read_yaml(preset_path(preset)), preset).to_dict()
    result: dict[str, Any] = {"base": preset}
    for key, (_, value) in config_diff(reference, data).items():
        set_dotted(result, key, value)
    return result

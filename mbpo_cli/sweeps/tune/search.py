"""How Optuna searches a study's space: the sampler (:class:`SamplerSpec`) and the pruner (:class:`PrunerSpec`), and
how a study file's ``sampler:`` and ``pruner:`` are read. Nothing here imports Optuna: `storage` makes Optuna's
sampler and pruner from these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mbpo_cli.config.errors import ConfigError, clip, shown
from mbpo_cli.config.sections.train import MAX_SEED
from mbpo_cli.sweeps.tune.checks import MAX_TRIALS, integer, number


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


def read_sampler(raw: Any, where: str) -> SamplerSpec:
    """A study file's ``sampler:`` (None: the default, TPE)."""
    if raw is None:
        return SamplerSpec()
    kind, settings = _typed(raw, where, "sampler", SamplerType, ("seed", "startup_trials"))
    seed = integer(settings.get("seed", 0), f"{where}: sampler.seed", 0, MAX_SEED)
    startup = integer(settings.get("startup_trials", 10), f"{where}: sampler.startup_trials", 0, MAX_TRIALS)
    if kind is not SamplerType.TPE and "startup_trials" in settings:
        raise ConfigError(f"{where}: sampler.startup_trials: a TPE setting (the sampler is {kind.value})")
    return SamplerSpec(kind, seed, startup)


def read_pruner(raw: Any, where: str) -> PrunerSpec:
    """A study file's ``pruner:`` (None: the default, median)."""
    if raw is None:
        return PrunerSpec()
    kind, settings = _typed(raw, where, "pruner", PrunerType,
                            ("startup_trials", "warmup_steps", "lower", "upper"))
    allowed = {PrunerType.MEDIAN: {"startup_trials", "warmup_steps"},
               PrunerType.THRESHOLD: {"lower", "upper", "warmup_steps"}, PrunerType.NONE: set()}[kind]
    for name in settings:
        if name != "type" and name not in allowed:
            raise ConfigError(f"{where}: pruner.{name}: not a setting of the {kind.value} pruner")
    startup = integer(settings.get("startup_trials", 5), f"{where}: pruner.startup_trials", 0, MAX_TRIALS)
    warmup = integer(settings.get("warmup_steps", 0), f"{where}: pruner.warmup_steps", 0, 2**53)
    lower = None if settings.get("lower") is None else number(settings["lower"], f"{where}: pruner.lower")
    upper = None if settings.get("upper") is None else number(settings["upper"], f"{where}: pruner.upper")
    if kind is PrunerType.THRESHOLD and lower is None and upper is None:
        raise ConfigError(f"{where}: pruner: the threshold pruner needs lower, upper or both")
    if lower is not None and upper is not None and lower > upper:
        raise ConfigError(f"{where}: pruner: lower {lower:g} is above upper {upper:g}")
    return PrunerSpec(kind, startup, warmup, lower, upper)

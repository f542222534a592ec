"""A study's definition (:class:`StudySpec`): everything needed to run and rerun it (the space, objective, sampler,
pruner, number of trials and the fixed config every trial starts from), built from a study file and validated
before anything runs, each trial's config, and the plain data it round-trips through (the registry group's info),
so that `mbpo tune --resume STUDY` rebuilds it."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.schema import Config
from mbpo_cli.config.validation import build_config
from mbpo_cli.runs.registry import sanitize_name
from mbpo_cli.sweeps.tune.checks import MAX_TRIALS, integer
from mbpo_cli.sweeps.tune.objective import Direction, Objective
from mbpo_cli.sweeps.tune.search import PrunerSpec, PrunerType, SamplerSpec, SamplerType
from mbpo_cli.sweeps.tune.space import Param, check_space, describe_values, grid_size, set_dotted
from mbpo_cli.sweeps.tune.study_file import StudyFile

STUDY_VERSION = 1
"""Version of the plain data a study's definition is stored as (the registry group's info)."""
DEFAULT_TRIALS = 20
"""Trials of a study whose file and command line name none (a grid search: its number of points)."""


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


def check_trials(trials: int, where: str, spec: StudySpec | None = None, grid: int | None = None) -> None:
    """ConfigError unless ``trials`` is in [1, MAX_TRIALS] and, for a grid search, at most its number of points."""
    integer(trials, where, 1, MAX_TRIALS)
    if grid is None and spec is not None and spec.sampler.type is SamplerType.GRID:
        grid = grid_size(spec.space, where)
    if grid is not None and trials > grid:
        raise ConfigError(f"{where}: {trials} trials, but the grid has {grid} points (each is tried once)")


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

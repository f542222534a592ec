"""A study file as read (:class:`StudyFile`): its base and the study's settings, validated on their own (the space
against the fixed config later: `spec.build_spec`).

Every problem is one line naming the file and the key (``study.yaml: space.sac.lr: low must be > 0 with log:
true``). A study file::

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mbpo_cli.config.errors import ConfigError, clip, shown
from mbpo_cli.config.yaml_reader import YamlRefused, load_user_yaml
from mbpo_cli.sweeps.tune.checks import MAX_TRIALS, integer
from mbpo_cli.sweeps.tune.objective import Objective, read_objective
from mbpo_cli.sweeps.tune.search import PrunerSpec, SamplerSpec, SamplerType, read_pruner, read_sampler
from mbpo_cli.sweeps.tune.space import Param, grid_size, read_space

FILE_KEYS = ("base", "space", "metric", "last", "direction", "trials", "sampler", "pruner")
"""The keys a study file may hold."""


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


def read_study_file(path: Path) -> StudyFile:
    """The study file at ``path``, validated on its own (the space against a config later:
    :func:`.space.check_space`)."""
    data = _load(path)
    where = str(path)
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: {clip(str(unknown[0]))}: unknown key (known: {', '.join(FILE_KEYS)})")
    base = data.get("base")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{where}: base: expected a preset name or a config file, got {shown(base)}")
    space = read_space(data.get("space"), where)
    sampler = read_sampler(data.get("sampler"), where)
    trials = data.get("trials")
    if trials is not None:
        integer(trials, f"{where}: trials", 1, MAX_TRIALS)
    study = StudyFile(path=path, base=base, space=space, objective=read_objective(data, where), trials=trials,
                      sampler=sampler, pruner=read_pruner(data.get("pruner"), where))
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

"""What a study's trials are scored by (:class:`Objective`: a metric's mean over the last evaluations, maximized or
minimized), and how a study file's ``metric:``, ``last:`` and ``direction:`` are read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.errors import ConfigError, shown
from mbpo_cli.sweeps.tune.checks import integer

MAX_LAST = 1000
"""Most evaluations the objective may average."""


class Direction(str, Enum):
    """Whether the objective is to be maximized or minimized."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


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


def read_objective(data: Mapping[str, Any], where: str) -> Objective:
    """The objective of a study file (its ``metric:``, ``last:`` and ``direction:``)."""
    metric = data.get("metric", metric_keys.EVAL_RETURN)
    if not isinstance(metric, str):
        raise ConfigError(f"{where}: metric: expected a metric key such as eval_return, got {shown(metric)}")
    key = _metric_key(metric)
    if metric_keys.metric(key) is None:
        raise ConfigError(f"{where}: metric: unknown metric {shown(metric)} (e.g. {metric_keys.EVAL_RETURN}; "
                          "`mbpo runs metrics RUN` lists a run's)")
    last = integer(data.get("last", 1), f"{where}: last", 1, MAX_LAST)
    direction = data.get("direction", Direction.MAXIMIZE.value)
    try:
        return Objective(key, last, Direction(direction))
    except ValueError:
        raise ConfigError(f"{where}: direction: expected maximize or minimize, got {shown(direction)}") from None


def _metric_key(text: str) -> str:
    """A metric's key from the key itself or its TensorBoard tag (``eval/eval_return``)."""
    _, slash, key = text.partition("/")
    return key if slash and metric_keys.tensorboard_tag(key) == text else text

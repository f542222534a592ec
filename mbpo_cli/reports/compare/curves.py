"""The compared runs' eval curves: read from the registry, valued between evaluations, and a group's runs on one
grid.

* **A run's return at an env step** that is not one of its eval steps is linearly interpolated between the
  two evaluations around it and never extrapolated (:data:`VALUES_AT_STEPS`): before its first or after its
  last evaluation a run has no value, and it is left out of that step's statistics.
* **Final step** of a group: the last eval step that every one of its runs reached (the shortest run's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.reports import stats
from mbpo_cli.runs.registry import Registry, RunInfo

Curve = stats.Curve

STEP_AXIS = "env steps count every real step, the random exploration steps (train.init_steps) included"
"""What every env step in a report counts (also said in the output, to set numbers beside published curves)."""

VALUES_AT_STEPS = (
    "a run's return at an env step between two of its evaluations is linearly interpolated between those two "
    "evaluations (exact at an eval step) and never extrapolated: before its first or after its last evaluation a "
    "run has no value and is left out"
)
"""How a return at a milestone (or any step that is not an eval step) is obtained; also said in the output."""


def load_curves(registry: Registry, runs: Sequence[RunInfo], key: str = metric_keys.EVAL_RETURN) -> dict[str, Curve]:
    """Each run's ``eval_return`` curve (or another metric's): run id -> ``(steps (N,), returns (N,))``."""
    curves: dict[str, Curve] = {}
    for run in runs:
        rows = registry.metrics(run.id, key)
        curves[run.id] = (np.array([r[0] for r in rows], dtype=float), np.array([r[2] for r in rows], dtype=float))
    return curves


@dataclass(frozen=True)
class GroupCurve:
    """A group's runs on the union of their eval steps up to the group's final step."""

    grid: np.ndarray
    """(G,) the env steps."""
    values: np.ndarray
    """(R, G) each run's return at each step."""
    iqm: np.ndarray
    """(G,) the IQM over runs at each step."""

    @property
    def final_step(self) -> int:
        """The group's final step (the grid's last)."""
        return int(self.grid[-1])


def group_curve(runs: Sequence[RunInfo], curves: Mapping[str, Curve]) -> GroupCurve:
    """The curve of a group of ``runs``: on the steps every run covers, or, when they share no step range, at the
    shortest run's last step only."""
    own = [curves[r.id] for r in runs]
    start = max(float(s[0]) for s, _ in own)
    end = min(float(s[-1]) for s, _ in own)
    steps = np.unique(np.concatenate([s for s, _ in own]))
    grid = steps[(steps >= start) & (steps <= end)]
    if grid.size == 0:
        grid = np.array([end])
    values = stats.curves_on_grid(own, grid)
    return GroupCurve(grid=grid, values=values, iqm=np.asarray(stats.iqm(values, axis=0), dtype=float).reshape(-1))


def values_at(runs: Sequence[RunInfo], curves: Mapping[str, Curve], step: float) -> np.ndarray:
    """(R',) the returns at ``step`` of the runs whose curves cover it."""
    values = stats.curves_on_grid([curves[r.id] for r in runs], np.array([float(step)]))[:, 0]
    return values[np.isfinite(values)]


def span(runs: Sequence[RunInfo], curves: Mapping[str, Curve]) -> str:
    """``first-last`` eval step over ``runs``, for notes."""
    first = min(float(curves[r.id][0][0]) for r in runs)
    last = max(float(curves[r.id][0][-1]) for r in runs)
    return f"{first:,.0f}-{last:,.0f}"

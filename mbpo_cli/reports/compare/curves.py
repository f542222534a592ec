"""The compared runs' eval curves: read from the registry, valued between evaluations, and a group's runs on one
grid.

A curve's x is the report's axis (:class:`~mbpo_cli.reports.axis.Axis`): each evaluation's env step, or with
``--x wall`` its training wall time in seconds (the ``wall_seconds`` its epoch logged; see
:mod:`mbpo_cli.reports.axis` for what that counts). Everything below holds on either axis; "step" reads "second".

* **A run's return at an env step** that is not one of its eval steps is linearly interpolated between the
  two evaluations around it and never extrapolated (:data:`VALUES_AT_STEPS`): before its first or after its
  last evaluation a run has no value, and it is left out of that step's statistics.
* **Final step** of a group: the last eval step that every one of its runs reached (the shortest run's).
* **A group's grid**: the union of its runs' eval steps (or eval times) from the latest first one to the
  earliest last one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.reports import stats
from mbpo_cli.reports.axis import Axis
from mbpo_cli.reports.refs import ReportError
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

WALL_AXIS = (
    "training time is a run's training wall-clock seconds at each evaluation (its wall_seconds metric), summed over "
    "its sessions: the time between sessions is not counted"
)
"""What every time of a ``--x wall`` report counts (also said in the output)."""

VALUES_AT_TIMES = (
    "a run's return at a training time between two of its evaluations is linearly interpolated between those two "
    "evaluations (exact at an evaluation's time) and never extrapolated: before its first or after its last "
    "evaluation a run has no value and is left out"
)
""":data:`VALUES_AT_STEPS` on the wall-clock axis."""


def values_rule(x: Axis) -> str:
    """How a return between evaluations is obtained, on axis ``x``."""
    return VALUES_AT_STEPS if x is Axis.STEPS else VALUES_AT_TIMES


def load_curves(registry: Registry, runs: Sequence[RunInfo], key: str = metric_keys.EVAL_RETURN,
                x: Axis = Axis.STEPS) -> dict[str, Curve]:
    """Each run's ``eval_return`` curve (or another metric's): run id -> ``(x (N,), returns (N,))``, x the env steps
    or (``x`` wall) the training wall time of each evaluation.

    Raises:
        ReportError: on the wall axis, a run without a training wall time at one of its evaluations, or whose wall
            time does not increase with its env steps (it has no place on that axis).
    """
    curves: dict[str, Curve] = {}
    for run in runs:
        rows = registry.metrics(run.id, key)
        steps = np.array([r[0] for r in rows], dtype=float)
        values = np.array([r[2] for r in rows], dtype=float)
        curves[run.id] = (steps if x is Axis.STEPS else _wall_times(registry, run, steps), values)
    return curves


def _wall_times(registry: Registry, run: RunInfo, steps: np.ndarray) -> np.ndarray:
    """(N,) the run's training wall time (``wall_seconds``) at each of ``steps``.

    Raises:
        ReportError: a step without one, or times that do not increase with the steps.
    """
    wall = {step: value for step, _, value in registry.metrics(run.id, metric_keys.WALL_SECONDS)}
    missing = [int(s) for s in steps if int(s) not in wall]
    if missing:
        raise ReportError(f"--x wall: run {run.id} ({run.name}) has no training wall time ({metric_keys.WALL_SECONDS}) "
                          f"at its evaluation at env step {missing[0]:,}, so it has no place on the wall-clock axis; "
                          "compare it with --x steps")
    times = np.array([wall[int(s)] for s in steps], dtype=float)
    if times.size > 1 and not np.all(np.diff(times) > 0):
        at = int(steps[1:][np.diff(times) <= 0][0])
        raise ReportError(f"--x wall: run {run.id} ({run.name}): its training wall time does not increase with its "
                          f"env steps (at env step {at:,}), so it has no place on the wall-clock axis; compare it with "
                          "--x steps")
    return times


@dataclass(frozen=True)
class GroupCurve:
    """A group's runs on the union of their eval steps up to the group's final step."""

    grid: np.ndarray
    """(G,) the env steps (or seconds: see :attr:`x`)."""
    values: np.ndarray
    """(R, G) each run's return at each step."""
    iqm: np.ndarray
    """(G,) the IQM over runs at each step."""
    x: Axis = Axis.STEPS
    """What the grid holds: env steps or training seconds."""

    @property
    def final_step(self) -> float:
        """The group's final step (the grid's last; an int), or on the wall axis its final time in seconds."""
        return self.x.position(self.grid[-1])


def group_curve(runs: Sequence[RunInfo], curves: Mapping[str, Curve], x: Axis = Axis.STEPS) -> GroupCurve:
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
    return GroupCurve(grid=grid, values=values, iqm=np.asarray(stats.iqm(values, axis=0), dtype=float).reshape(-1),
                      x=x)


def values_at(runs: Sequence[RunInfo], curves: Mapping[str, Curve], step: float) -> np.ndarray:
    """(R',) the returns at ``step`` of the runs whose curves cover it."""
    values = stats.curves_on_grid([curves[r.id] for r in runs], np.array([float(step)]))[:, 0]
    return values[np.isfinite(values)]


def span(runs: Sequence[RunInfo], curves: Mapping[str, Curve], x: Axis = Axis.STEPS) -> str:
    """``env steps first-last`` (or the training times) of the evaluations of ``runs``, for notes."""
    first = min(float(curves[r.id][0][0]) for r in runs)
    last = max(float(curves[r.id][0][-1]) for r in runs)
    return x.span(first, last)

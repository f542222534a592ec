"""The sample-efficiency table: env steps to reach and hold a threshold, how many times fewer than the baseline,
the normalized AUC, and the wall time to the threshold.

* **Steps to threshold** (:data:`THRESHOLD_RULE`): the first env step from which the group's IQM curve (on the
  union of its runs' eval steps up to its final step) stays at or above the threshold, linearly interpolated;
  a peak the curve falls back from does not count, so a baseline's noisy early peak never makes a group that
  ends above it look slower. The default threshold is the baseline's final IQM return. The ratio baseline
  steps / group steps says how many times fewer real steps the group needed; when the baseline never reaches
  and holds a user-given threshold the ratio is a lower bound.
* **Normalized AUC**, per environment: each run's mean return over the interval every compared run of its env
  covers (latest first eval step to shortest last eval step), scaled with low = the lowest and high = the
  highest eval return of any compared run of that env (0 = the worst return seen, 1 = the best); the group
  shows the IQM over its runs. Returns of different environments are never pooled.
* **On the wall-clock axis** (``--x wall``) the same definitions hold over training seconds: the time to the
  threshold is the first training time from which the IQM curve (on the union of the runs' eval times) stays at
  or above it, the ratio says how many times less training time than the baseline the group needed, and the AUC
  is the mean return over the training time every run of the env covers. The estimate ``wall_to_threshold`` (env
  steps divided by env steps per second) is not given there: the time is measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mbpo_cli.reports import stats
from mbpo_cli.reports.axis import Axis
from mbpo_cli.reports.compare.comparison import Comparison
from mbpo_cli.reports.compare.curves import Curve
from mbpo_cli.reports.compare.final import FinalRow
from mbpo_cli.reports.compare.groups import Group
from mbpo_cli.runs.registry import RunInfo

THRESHOLD_RULE = (
    "steps to threshold: the first env step from which a group's IQM curve stays at or above the threshold up to "
    "the group's final step (a peak it falls back from does not count); the threshold is the baseline's final IQM "
    "return unless --threshold is given"
)
"""How steps to the threshold are measured and where the default threshold comes from; also said in the output."""

THRESHOLD_RULE_WALL = (
    "time to threshold: the first training time from which a group's IQM curve stays at or above the threshold up to "
    "the group's final time (a peak it falls back from does not count); the threshold is the baseline's final IQM "
    "return unless --threshold is given"
)
""":data:`THRESHOLD_RULE` on the wall-clock axis."""


def threshold_rule(x: Axis) -> str:
    """How the time (or steps) to the threshold is measured on axis ``x``."""
    return THRESHOLD_RULE if x is Axis.STEPS else THRESHOLD_RULE_WALL


@dataclass(frozen=True)
class EfficiencyRow:
    """One group's sample efficiency against its baseline."""

    group: str
    baseline: str | None
    threshold: float | None
    steps: float | None
    """Env step (on the wall axis: training seconds) from which the group's IQM curve stays at or above
    ``threshold`` (:data:`THRESHOLD_RULE`); None if its final return is below it (or no threshold)."""
    searched_until: float
    """The group's final step (an int), or final time: the threshold was looked for up to here."""
    seeds_reaching: int
    """Runs whose own curve reaches the threshold and stays at or above it up to their last eval."""
    n_seeds: int
    ratio: float | None
    """Baseline steps / group steps: how many times fewer real steps (or less training time) the group needed."""
    ratio_is_lower_bound: bool
    """True when the baseline does not end at or above the threshold: the ratio uses its final step instead."""
    auc: float
    """IQM over runs of the normalized AUC (see the module docstring); NaN without a common interval."""
    wall_to_threshold: float | None
    """``steps`` divided by the group's env steps per second: an estimate of the wall time to the threshold (None on
    the wall axis, where ``steps`` is the measured time)."""


@dataclass(frozen=True)
class AucInterval:
    """The shared AUC interval and normalization (NaN interval when the runs share no interval)."""

    start: float
    end: float
    low: float
    high: float


def _auc_interval(runs: Sequence[RunInfo], curves: Mapping[str, Curve]) -> AucInterval:
    """The interval every one of ``runs`` covers and their lowest and highest eval return (NaN interval if none)."""
    returns = np.concatenate([curves[r.id][1] for r in runs])
    start = max(float(curves[r.id][0][0]) for r in runs)
    end = min(float(curves[r.id][0][-1]) for r in runs)
    if end <= start:
        start, end = math.nan, math.nan
    return AucInterval(start, end, float(returns.min()), float(returns.max()))


def auc_intervals(comparison: Comparison) -> tuple[dict[str, AucInterval], list[str]]:
    """Env id -> the AUC interval and normalization of that env's runs (returns of different envs have different
    scales), and a note per env whose runs share no interval."""
    intervals: dict[str, AucInterval] = {}
    notes: list[str] = []
    for env in comparison.baselines:
        intervals[env] = _auc_interval([r for g in comparison.groups if g.env_id == env for r in g.runs],
                                       comparison.curves)
        if math.isnan(intervals[env].start):
            runs_of = "the runs" if len(comparison.baselines) == 1 else f"the {env} runs"
            notes.append(f"{runs_of} share no {comparison.x.range_name} interval with two or more evals: no "
                         "normalized AUC")
    return intervals, notes


def thresholds(comparison: Comparison, finals: Sequence[FinalRow], threshold: float | None) -> dict[str, float | None]:
    """Env id -> the return to reach: ``threshold`` (``--threshold``), else the final IQM return of the env's
    baseline (None without a baseline)."""
    final_iqm = {row.group: row.iqm for row in finals}
    return {env: threshold if threshold is not None else (final_iqm[base] if base is not None else None)
            for env, base in comparison.baselines.items()}


def _group_auc(group: Group, curves: Mapping[str, Curve], interval: AucInterval) -> float:
    """The IQM over ``group``'s runs of their normalized AUC over ``interval`` (NaN without one)."""
    if math.isnan(interval.start):
        return math.nan
    aucs = [stats.normalized_auc(*curves[r.id], interval.start, interval.end, interval.low, interval.high)
            for r in group.runs]
    return float(stats.iqm(np.array(aucs)))


def _steps_to(comparison: Comparison, group: Group, threshold: float | None) -> float | None:
    """The env step from which ``group``'s IQM curve stays at or above ``threshold`` (None: never, or no threshold)."""
    if threshold is None:
        return None
    curve = comparison.curve(group)
    return stats.steps_to_threshold(curve.grid, curve.iqm, threshold)


def _ratio(comparison: Comparison, group: Group, reach: Mapping[str, float | None]) -> tuple[float | None, bool]:
    """Baseline steps / ``group``'s steps to the threshold, and whether that is a lower bound (the baseline never
    reaches it: its final step stands in); None without a baseline or steps."""
    base = comparison.baselines[group.env_id]
    steps = reach[group.name]
    if base is None or steps is None or steps <= 0:
        return None, False
    base_steps = reach[base]
    if base_steps is not None:
        return base_steps / steps, False
    return comparison.group_curves[base].final_step / steps, True


def efficiency_rows(comparison: Comparison, threshold_of: Mapping[str, float | None], aucs: Mapping[str, AucInterval],
                    rates: Mapping[str, float | None]) -> list[EfficiencyRow]:
    """Every group's row, given each env's threshold and AUC interval and each group's env steps per second (None: no
    estimate of the wall time to the threshold)."""
    reach = {g.name: _steps_to(comparison, g, threshold_of[g.env_id]) for g in comparison.groups}
    rows = []
    for group in comparison.groups:
        thr = threshold_of[group.env_id]
        steps, rate = reach[group.name], rates[group.name]
        ratio, lower = _ratio(comparison, group, reach)
        reaching = 0 if thr is None else sum(
            stats.steps_to_threshold(*comparison.curves[r.id], thr) is not None for r in group.runs)
        rows.append(EfficiencyRow(group.name, comparison.baselines[group.env_id], thr, steps,
                                  comparison.curve(group).final_step, reaching, len(group.runs), ratio, lower,
                                  _group_auc(group, comparison.curves, aucs[group.env_id]),
                                  steps / rate if steps is not None and rate else None))
    return rows

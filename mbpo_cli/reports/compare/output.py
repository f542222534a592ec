"""A compare report as data for the outputs: JSON, the long-format CSV rows, and the curves to plot.

A report on the wall-clock axis says so in its JSON (``"x": "wall"``, with ``"wall"`` saying what its times count);
its fields keep their names (``step``, ``steps``, ``p_step``, ...) and hold seconds of training time. A report on
the env-step axis carries no ``"x"`` (its JSON is what it was before the axis existed). With ``--reference`` the
JSON gains ``"reference"`` (the curve's label and source) and each returns row a ``"reference"`` object (mean, low,
high, seeds_inside, n_seeds; the first four null where the curve has no value); without it neither key is there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from mbpo_cli.reports import stats
from mbpo_cli.reports.axis import Axis
from mbpo_cli.reports.compare.curves import STEP_AXIS, WALL_AXIS, Curve, values_rule
from mbpo_cli.reports.compare.efficiency import threshold_rule
from mbpo_cli.reports.compare.groups import Group
from mbpo_cli.reports.compare.report import Report


def _clean(value: Any) -> Any:
    """NaN and inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _group_data(group: Group) -> dict[str, Any]:
    """A group and its runs, for the JSON."""
    return {"name": group.name, "env": group.env_id, "algo": group.algo, "preset": group.preset,
            "n_seeds": len(group.runs),
            "runs": [{"id": r.id, "name": r.name, "seed": r.seed, "status": r.display_status,
                      "registry_group": r.group, "variant": r.variant} for r in group.runs]}


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (NaN as null): the same numbers as the tables, unrounded."""
    axis: dict[str, Any] = {} if report.x is Axis.STEPS else {"x": report.x.value}
    returns = [asdict(r) for r in report.returns]
    reference: dict[str, Any] = {}
    if report.reference is None:
        for row in returns:
            del row["reference"]
    else:
        reference = {"reference": {"label": report.reference.label, "source": report.reference.source,
                                   "rule": REFERENCE_RULE}}
    return _clean({
        **axis,
        "groups": [_group_data(g) for g in report.groups],
        "milestones": list(report.milestones),
        "returns": returns,
        **reference,
        "baselines": dict(report.baselines),
        "threshold_source": report.threshold_source,
        "threshold_rule": threshold_rule(report.x),
        "efficiency": [asdict(r) for r in report.efficiency],
        "auc_interval": asdict(next(iter(report.auc.values()))) if len(report.auc) == 1 else None,
        "auc_intervals": {env: asdict(interval) for env, interval in report.auc.items()},
        "wall_clock": [asdict(r) for r in report.wall],
        "final": [asdict(r) for r in report.final],
        "notes": list(report.notes),
        "warnings": list(report.warnings),
        "steps": STEP_AXIS,
        **({} if report.x is Axis.STEPS else {"wall": WALL_AXIS}),
        "interpolation": values_rule(report.x),
    })


REFERENCE_RULE = ("the published curve linearly interpolated between its steps, never extrapolated; a seed is inside "
                  "when its return at the milestone lies in [low, high], both ends included")
"""How the reference's numbers at a milestone are made, for the JSON and the table's notes."""


def long_rows(report: Report, curves: Mapping[str, Curve]) -> list[tuple[str, str, int, int, float]]:
    """``(run_id, group, seed, step, return)`` for every eval point of every compared run."""
    rows: list[tuple[str, str, int, int, float]] = []
    for group in report.groups:
        for run in group.runs:
            steps, values = curves[run.id]
            rows.extend((run.id, group.name, run.seed, int(s), float(v)) for s, v in zip(steps, values, strict=True))
    return rows


WALL_CSV_HEADER = ("run_id", "group", "seed", "step", "wall_seconds", "return")
"""The columns of the long-format CSV on the wall-clock axis (:func:`wall_long_rows`)."""


def wall_long_rows(report: Report, steps: Mapping[str, Curve],
                   times: Mapping[str, Curve]) -> list[tuple[str, str, int, int, float, float]]:
    """``(run_id, group, seed, step, wall_seconds, return)`` for every eval point of every compared run, from its
    curves on both axes (``steps`` and ``times``, as :func:`~mbpo_cli.reports.compare.curves.load_curves` reads
    them: the same evaluations in the same order)."""
    rows: list[tuple[str, str, int, int, float, float]] = []
    for group in report.groups:
        for run in group.runs:
            (at, values), (seconds, _) = steps[run.id], times[run.id]
            rows.extend((run.id, group.name, run.seed, int(s), float(t), float(v))
                        for s, t, v in zip(at, seconds, values, strict=True))
    return rows


def plot_data(report: Report, curves: Mapping[str, Curve]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Group name -> ``(grid (G,), returns (R, G))`` on the union of all eval steps, or eval times on the wall axis
    (for :mod:`mbpo_cli.reports.plots`)."""
    grid = np.unique(np.concatenate([curves[r.id][0] for g in report.groups for r in g.runs]))
    return {g.name: (grid, stats.curves_on_grid([curves[r.id] for r in g.runs], grid)) for g in report.groups}


def model_return_data(report: Report, curves: Mapping[str, Curve]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Like :func:`plot_data` for the model-return curves (``diag_model_return``), for the groups whose every run
    recorded one (model-free groups and runs without diagnostics are left out)."""
    groups = [g for g in report.groups if all(curves[r.id][0].size for r in g.runs)]
    if not groups:
        return {}
    grid = np.unique(np.concatenate([curves[r.id][0] for g in groups for r in g.runs]))
    return {g.name: (grid, stats.curves_on_grid([curves[r.id] for r in g.runs], grid)) for g in groups}

"""The returns table: each group's returns at milestones (env steps, or seconds of training on the wall axis).

**Returns at milestones**: mean, IQM and 95% percentile-bootstrap CI of the IQM of the runs that have a value at
the milestone (:data:`~mbpo_cli.reports.compare.curves.VALUES_AT_STEPS`). The default milestones are the steps of
:func:`stats.milestones` (plus the paper's budgets) that every compared run covers; a user-given milestone (``--at``)
where a group has no run with a value shows no data, with a note. On the wall-clock axis (``--x wall``) the
milestones are whole seconds of training time chosen the same way (25/50/75/100% of the shortest run's last eval
time, rounded down to a whole second, from the latest first eval time on; the paper's budgets are env steps and are
left out), or ``--at`` in seconds (:func:`parse_seconds`).

With a published curve (``--reference``, env-step axis only: :mod:`mbpo_cli.reports.reference`) each row also
holds the curve's mean and range at the milestone and how many of the group's seeds lie inside that range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mbpo_cli.reports import stats
from mbpo_cli.reports.axis import Axis
from mbpo_cli.reports.compare.comparison import Comparison
from mbpo_cli.reports.compare.curves import span, values_at
from mbpo_cli.reports.compare.groups import Group
from mbpo_cli.reports.reference import Reference, ReferencePoint, reference_point
from mbpo_cli.reports.refs import ReportError

PAPER_BUDGETS: dict[str, tuple[int, ...]] = {
    "Hopper": (125_000,),
    "Walker2d": (300_000,),
    "HalfCheetah": (400_000,),
    "Ant": (300_000,),
    "Humanoid": (300_000,),
}
"""Env-step budgets of the MBPO paper's learning curves (Janner et al. 2019, Figure 2), by env name."""


@dataclass(frozen=True)
class MilestoneRow:
    """One group's returns at one env step, or training second (NaN CI with fewer than 2 seeds there, all NaN with
    none)."""

    group: str
    step: int
    n_seeds: int
    mean: float
    iqm: float
    ci_low: float
    ci_high: float
    reference: ReferencePoint | None = None
    """The published curve beside the group's seeds here (None without ``--reference``)."""


def paper_budgets(env_ids: Sequence[str]) -> list[int]:
    """The paper's budgets for the given env ids (e.g. ``Hopper-v5`` -> 125,000)."""
    return sorted({b for env in env_ids for b in PAPER_BUDGETS.get(env.split("-v")[0], ())})


def parse_steps(text: str) -> list[int]:
    """``"25000,50k,1e5"`` -> [25000, 50000, 100000]; ReportError on anything else."""
    steps = []
    for part in text.split(","):
        token = part.strip().lower().replace("_", "")
        scale = 1
        if token.endswith("k"):
            token, scale = token[:-1], 1_000
        elif token.endswith("m"):
            token, scale = token[:-1], 1_000_000
        try:
            value = float(token) * scale
        except ValueError:
            raise ReportError(f"--at: expected env steps separated by commas (e.g. 25000,50k), got {text!r}") from None
        if not math.isfinite(value) or value <= 0 or value != int(value):
            raise ReportError(f"--at: env steps must be positive whole numbers, got {part.strip()!r}")
        steps.append(int(value))
    return steps


SECOND_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600}
"""The units ``--at`` takes with ``--x wall``: seconds (also a bare number), minutes, hours."""


def parse_seconds(text: str) -> list[int]:
    """``"90,30m,1.5h"`` -> [90, 1800, 5400] (whole seconds; a bare number is seconds); ReportError on anything
    else."""
    seconds = []
    for part in text.split(","):
        token = part.strip().lower().replace("_", "")
        unit = next((u for u in sorted(SECOND_UNITS, key=len, reverse=True) if token.endswith(u)), "")
        try:
            value = float(token.removesuffix(unit)) * SECOND_UNITS.get(unit, 1)
        except ValueError:
            raise ReportError(f"--at: expected seconds of training separated by commas (e.g. 90,30m,2h), got {text!r}"
                              ) from None
        if not math.isfinite(value) or value <= 0 or value != int(value):
            raise ReportError(f"--at: training times must be positive whole seconds, got {part.strip()!r}")
        seconds.append(int(value))
    return seconds


def choose_milestones(comparison: Comparison, at: Sequence[int] | None) -> tuple[list[int], list[str]]:
    """The milestones (``at``, else by default only steps every run covers: no row without data), and a note when
    the runs share no step range (then each group's final step is one). On the wall axis they are whole seconds.

    Raises:
        ReportError: a step of ``at`` is not positive.
    """
    runs = comparison.runs()
    x = comparison.x
    last = min(float(comparison.curves[r.id][0][-1]) for r in runs)
    shortest = int(last)
    first_common = max(float(comparison.curves[r.id][0][0]) for r in runs)
    if at:
        if any(s <= 0 for s in at):
            raise ReportError(f"--at: {'env steps' if x is Axis.STEPS else 'training times'} must be positive")
        return sorted({int(s) for s in at}), []
    if first_common <= shortest:
        budgets = paper_budgets([g.env_id for g in comparison.groups]) if x is Axis.STEPS else []
        return stats.milestones(shortest, budgets, first_step=first_common) or [shortest], []
    finals = sorted({int(gc.final_step) for gc in comparison.group_curves.values()})
    return finals, [f"the runs share no {x.range_name} range (one ends at {x.fmt(last)}, another starts at "
                    f"{x.fmt(first_common)}): the milestones are each group's {x.end_name}"]


def _group_rows(comparison: Comparison, group: Group, milestones: Sequence[int], n_resamples: int,
                seed: int, reference: Reference | None) -> tuple[list[MilestoneRow], list[str]]:
    """``group``'s rows (beside ``reference`` when given), and a note on the milestones where none of its runs has a
    value."""
    summary = stats.summarize_group(group.name, [comparison.curves[r.id] for r in group.runs], milestones,
                                    n_resamples=n_resamples, seed=seed)
    rows = [MilestoneRow(group.name, step, summary.n_seeds[i], summary.mean[i], summary.iqm[i], summary.ci_low[i],
                         summary.ci_high[i],
                         None if reference is None
                         else reference_point(reference, step, values_at(group.runs, comparison.curves, step)))
            for i, step in enumerate(summary.steps)]
    empty = [row.step for row in rows if row.n_seeds == 0]
    if not empty:
        return rows, []
    x = comparison.x
    return rows, [f"no run of {group.name} has a value at {x.points(empty)} (its evaluations span "
                  f"{span(group.runs, comparison.curves, x)}; never extrapolated): no data"]


def returns_rows(comparison: Comparison, milestones: Sequence[int], n_resamples: int, seed: int,
                 reference: Reference | None = None) -> tuple[list[MilestoneRow], list[str]]:
    """Every group's rows at ``milestones``, group by group (beside ``reference`` when given), and notes on
    milestones without data."""
    rows: list[MilestoneRow] = []
    notes: list[str] = []
    for group in comparison.groups:
        group_rows, group_notes = _group_rows(comparison, group, milestones, n_resamples, seed, reference)
        rows += group_rows
        notes += group_notes
    return rows, notes

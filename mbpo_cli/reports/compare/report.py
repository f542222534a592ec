"""The report of `mbpo compare`: every table of one comparison with its notes and warnings, assembled from the
modules that own each table (:mod:`returns`, :mod:`efficiency`, :mod:`wall`, :mod:`final`).

Aggregates are over seeds, i.e. runs of one group; comparing several environments at all is warned about
(:attr:`Report.warnings`). The curves' x is env steps, or with ``--x wall`` training seconds
(:mod:`mbpo_cli.reports.axis`): every table but the wall-clock one is then over training time. A published curve
(:mod:`mbpo_cli.reports.reference`) is set beside the returns at milestones, on the env-step axis only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mbpo_cli.reports.axis import Axis
from mbpo_cli.reports.compare.comparison import baseline_group, comparison_of
from mbpo_cli.reports.compare.curves import Curve
from mbpo_cli.reports.compare.efficiency import (
    AucInterval,
    EfficiencyRow,
    auc_intervals,
    efficiency_rows,
    thresholds,
)
from mbpo_cli.reports.compare.final import FinalRow, final_rows
from mbpo_cli.reports.compare.groups import Group, group_runs
from mbpo_cli.reports.compare.returns import MilestoneRow, choose_milestones, returns_rows
from mbpo_cli.reports.compare.wall import WallRow, wall_rows
from mbpo_cli.reports.reference import Reference
from mbpo_cli.reports.refs import ReportError
from mbpo_cli.runs.registry import RunInfo

BOOTSTRAP_SEED = 0
"""The bootstrap's seed: the same runs give the same intervals."""
N_RESAMPLES = 2000
"""Bootstrap resamples per interval."""


@dataclass(frozen=True)
class Report:
    """Everything `mbpo compare` shows."""

    groups: tuple[Group, ...]
    milestones: tuple[int, ...]
    """Env steps, or whole seconds of training time (:attr:`x`)."""
    returns: tuple[MilestoneRow, ...]
    efficiency: tuple[EfficiencyRow, ...]
    wall: tuple[WallRow, ...]
    final: tuple[FinalRow, ...]
    auc: dict[str, AucInterval]
    """Env id -> the AUC interval and normalization of that env's runs."""
    baselines: dict[str, str | None]
    """Env id -> baseline group name (None: no baseline for that env)."""
    threshold_source: str
    """``--threshold`` or ``baseline final IQM``."""
    notes: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    """Things that make the comparison itself suspect (runs of several environments); the CLI prints them on
    stderr."""
    x: Axis = Axis.STEPS
    """The axis of the curves, milestones, thresholds and final points: env steps or training seconds."""
    reference: Reference | None = None
    """The published curve beside the returns at milestones (``--reference``), or None."""


def _with_curves(runs: Sequence[RunInfo], curves: Mapping[str, Curve]) -> tuple[list[RunInfo], list[str]]:
    """``runs`` (each once) that have eval returns, and a note per run left out for having none."""
    everything = list({r.id: r for r in runs}.values())
    usable = [r for r in everything if curves.get(r.id) is not None and len(curves[r.id][0]) > 0]
    kept = {r.id for r in usable}
    notes = [f"run {run.id} ({run.name}) has no evaluation returns yet: left out"
             for run in everything if run.id not in kept]
    return usable, notes


def _notes_on_runs(groups: Sequence[Group]) -> list[str]:
    """Repeated seeds in a group, and runs that did not finish."""
    notes = []
    for group in groups:
        seeds = group.seeds
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            notes.append(f"group {group.name} has several runs with seed {', '.join(map(str, repeated))}")
        for run in group.runs:
            status = run.display_status
            if status != "finished":
                notes.append(f"run {run.id} ({group.name}) is {status} at env step {run.env_steps:,}")
    return notes


def _env_warnings(groups: Sequence[Group], threshold: float | None) -> list[str]:
    """One line when the groups span several environments (their returns are on different scales)."""
    envs: dict[str, list[str]] = {}
    for group in groups:
        envs.setdefault(group.env_id, []).append(group.name)
    if len(envs) < 2:
        return []
    listing = "; ".join(f"{env}: {', '.join(names)}" for env, names in envs.items())
    line = (f"the runs span {len(envs)} environments ({listing}): returns of different environments are not "
            "comparable; each group holds one env and gets a baseline and an AUC normalization of its own env, but "
            "the milestone and final-return tables and the plots put them side by side")
    if threshold is not None:
        line += f"; --threshold {threshold:g} applies to every env"
    return [line]


def build_report(
    runs: Sequence[RunInfo],
    curves: Mapping[str, Curve],
    *,
    baseline_runs: Sequence[RunInfo] | None = None,
    at: Sequence[int] | None = None,
    threshold: float | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    x: Axis = Axis.STEPS,
    reference: Reference | None = None,
) -> Report:
    """Compare the groups formed by ``runs`` (plus ``baseline_runs``); see the modules of each table.

    Args:
        runs: the runs to compare (their groups are formed by :func:`group_runs`).
        curves: run id -> ``(x (N,), returns (N,))`` eval curve on axis ``x``, sorted
            (:func:`~mbpo_cli.reports.compare.curves.load_curves`).
        baseline_runs: runs of the baseline group (``--baseline``); None picks the model-free group per env.
        at: env steps (on the wall axis whole seconds) for the returns table (default: :func:`stats.milestones`
            plus the paper's budgets, those that every run covers).
        threshold: return to reach and hold (default: the baseline's final IQM return).
        n_resamples: bootstrap resamples per interval.
        seed: bootstrap seed; the same inputs give the same report.
        x: the curves' axis: env steps, or training seconds (milestones, thresholds and final points then in
            seconds; no estimate of the wall time to the threshold, which is measured).

    Raises:
        ReportError: no run with eval returns, a baseline spanning several configurations, bad ``at``.
    """
    if reference is not None and x is not Axis.STEPS:
        raise ReportError("--reference: published curves are over env steps; it cannot be used with --x wall")
    usable, notes = _with_curves([*runs, *(baseline_runs or [])], curves)
    if not usable:
        raise ReportError("none of the runs has evaluation returns yet")
    groups = group_runs(usable)
    notes += _notes_on_runs(groups)
    comparison, baseline_notes = comparison_of(groups, curves, baseline_group(groups, baseline_runs), x)
    milestones, milestone_notes = choose_milestones(comparison, at)
    returns, returns_notes = returns_rows(comparison, milestones, n_resamples, seed, reference)
    final, final_notes = final_rows(comparison, n_resamples, seed)
    wall = wall_rows(groups)
    aucs, auc_notes = auc_intervals(comparison)
    rates = {row.group: row.steps_per_second if x is Axis.STEPS else None for row in wall}
    efficiency = efficiency_rows(comparison, thresholds(comparison, final, threshold), aucs, rates)
    return Report(
        groups=tuple(groups),
        milestones=tuple(milestones),
        returns=tuple(returns),
        efficiency=tuple(efficiency),
        wall=tuple(wall),
        final=tuple(final),
        auc=aucs,
        baselines=dict(comparison.baselines),
        threshold_source="--threshold" if threshold is not None else "baseline final IQM",
        notes=tuple([*notes, *baseline_notes, *milestone_notes, *returns_notes, *final_notes, *auc_notes]),
        warnings=tuple(_env_warnings(groups, threshold)),
        x=x,
        reference=reference,
    )

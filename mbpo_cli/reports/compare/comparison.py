"""What is compared with what: the groups, their runs' curves, each group's curve on its common grid, and the
baseline group of each environment.

The baseline is the group of ``--baseline`` (for its own env; the other envs have none), else per env the one
model-free group (the base agent without a model) among the arguments; with none or several, that env has no
baseline, and a note says how to name one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mbpo_cli.reports.axis import Axis
from mbpo_cli.reports.compare.curves import Curve, GroupCurve, group_curve
from mbpo_cli.reports.compare.groups import Group
from mbpo_cli.reports.refs import ReportError
from mbpo_cli.runs.registry import RunInfo


def is_model_free(algo: str) -> bool:
    """Whether a run's algo label (`mbpo`, `mbpo-td3`, ..., `dhmbpo`, `sac`, `dqn`, ...) names an agent without a
    model."""
    return not algo.startswith(("mbpo", "dhmbpo"))


def baseline_group(groups: Sequence[Group], baseline_runs: Sequence[RunInfo] | None) -> Group | None:
    """The group holding ``baseline_runs`` (``--baseline``; None when not given).

    Raises:
        ReportError: the baseline runs span several groups, or none with eval returns.
    """
    if baseline_runs is None:
        return None
    ids = {r.id for r in baseline_runs}
    containing = [g for g in groups if ids & {r.id for r in g.runs}]
    if len(containing) != 1:
        raise ReportError(
            f"--baseline names runs of {len(containing)} configurations "
            f"({', '.join(g.name for g in containing) or 'none with eval returns'}); name one group of seeds"
        )
    return containing[0]


def _model_free_baseline(groups: Sequence[Group], env: str) -> tuple[str | None, list[str]]:
    """The one model-free group of ``env``, or None and a note."""
    free = [g.name for g in groups if g.env_id == env and is_model_free(g.algo)]
    if len(free) == 1:
        return free[0], []
    if free:
        return None, [f"several model-free groups for {env} ({', '.join(free)}): choose one with --baseline"]
    return None, [f"no baseline for {env}: no model-free group (the base agent without a model, e.g. algo sac) "
                  "among the arguments; pass --baseline RUN_OR_GROUP"]


def choose_baselines(groups: Sequence[Group], baseline: Group | None) -> tuple[dict[str, str | None], list[str]]:
    """Env id -> the name of its baseline group (None: no baseline), in order of the envs' first groups; and notes
    on the envs without one."""
    chosen: dict[str, str | None] = {}
    notes: list[str] = []
    for env in dict.fromkeys(g.env_id for g in groups):
        if baseline is None:
            chosen[env], why = _model_free_baseline(groups, env)
            notes.extend(why)
        elif baseline.env_id == env:
            chosen[env] = baseline.name
        else:
            chosen[env] = None
            notes.append(f"the baseline {baseline.name} runs {baseline.env_id}: no baseline for the {env} groups")
    return chosen, notes


@dataclass(frozen=True)
class Comparison:
    """The groups of a report with their curves and baselines: what every table is computed from."""

    groups: tuple[Group, ...]
    curves: Mapping[str, Curve]
    """Run id -> its eval curve on axis :attr:`x` (every run of every group has at least one eval)."""
    group_curves: Mapping[str, GroupCurve]
    """Group name -> the group's curve on its common grid."""
    baselines: Mapping[str, str | None]
    """Env id -> the name of its baseline group (None: no baseline)."""
    x: Axis = Axis.STEPS
    """What the curves' x holds: env steps or training seconds."""

    def curve(self, group: Group) -> GroupCurve:
        """The group's curve on its common grid."""
        return self.group_curves[group.name]

    def baseline_of(self, group: Group) -> Group | None:
        """The baseline group of ``group``'s env (None: none; it may be ``group`` itself)."""
        name = self.baselines[group.env_id]
        return next(g for g in self.groups if g.name == name) if name is not None else None

    def runs(self) -> list[RunInfo]:
        """Every compared run, group by group."""
        return [r for g in self.groups for r in g.runs]


def comparison_of(
    groups: Sequence[Group], curves: Mapping[str, Curve], baseline: Group | None, x: Axis = Axis.STEPS
) -> tuple[Comparison, list[str]]:
    """The comparison of ``groups`` against ``baseline`` (None: chosen per env) with curves on axis ``x``, and the
    notes on baselines."""
    baselines, notes = choose_baselines(groups, baseline)
    group_curves = {g.name: group_curve(g.runs, curves, x) for g in groups}
    return Comparison(tuple(groups), curves, group_curves, baselines, x), notes

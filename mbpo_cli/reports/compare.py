"""`mbpo compare`: honest sample-efficiency reports of groups of runs against a baseline (usually the base
agent without a model).

Everything here except :func:`resolve_refs` and :func:`load_curves` (which read the registry) is a pure
function of run records and their evaluation curves, returning frozen dataclasses; the CLI only renders.

Definitions (all aggregates are over seeds, i.e. runs of one group):

* **Groups.** Runs with the same config apart from ``train.seed``, ``train.device``, ``train.threads`` and
  ``train.cuda_graphs`` form one group, so a group never mixes environments. It is named after its registry
  group (plus ``/variant``) when all its runs carry the same one, else ``<preset or env id>-<algo>``, which
  gets the config keys in which it differs from the other groups of that preset and algo (or a short hash) in
  brackets when there are any; groups that would still share a name get theirs too.
* **Final step** of a group: the last eval step that every one of its runs reached (the shortest run's).
  Its **final return** is the IQM over runs of the return at that step.
* **A run's return at an env step** that is not one of its eval steps is linearly interpolated between the
  two evaluations around it and never extrapolated (:data:`VALUES_AT_STEPS`): before its first or after its
  last evaluation a run has no value, and it is left out of that step's statistics.
* **Returns at milestones**: mean, IQM and 95% percentile-bootstrap CI of the IQM (2,000 resamples, seed 0)
  of the runs that have a value at the milestone. The default milestones are the steps of
  :func:`stats.milestones` that every compared run covers; a user-given milestone where a group has no run
  with a value shows no data, with a note.
* **Steps to threshold** (:data:`THRESHOLD_RULE`): the first env step from which the group's IQM curve (on the
  union of its runs' eval steps up to its final step) stays at or above the threshold, linearly interpolated;
  a peak the curve falls back from does not count, so a baseline's noisy early peak never makes a group that
  ends above it look slower. The default threshold is the baseline's final IQM return. The ratio baseline
  steps / group steps says how many times fewer real steps the group needed; when the baseline never reaches
  and holds a user-given threshold the ratio is a lower bound.
* **Normalized AUC**, per environment: each run's mean return over the interval every compared run of its env
  covers (latest first eval step to shortest last eval step), scaled with low = the lowest and high = the
  highest eval return of any compared run of that env (0 = the worst return seen, 1 = the best); the group
  shows the IQM over its runs. Returns of different environments are never pooled; comparing several
  environments at all is warned about (:attr:`Report.warnings`).
* **Probability of improvement** over the baseline: P(a run of the group beats a run of the baseline),
  ties counting half, with both measured at the last step both groups reach; None (n/a) unless both groups
  have at least :data:`MIN_RUNS_FOR_P` runs there.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.reports import stats
from mbpo_cli.runs.registry import Registry, RegistryError, RunInfo

Curve = stats.Curve

IGNORED_KEYS = ("train.seed", "train.device", "train.threads", "train.cuda_graphs", "train.tensorboard",
                "train.track")
"""Config keys that may differ between the seeds of one group (how a run is executed or logged, not what it learns;
runs recorded before `train.tensorboard` or `train.track` existed lack them)."""
IGNORED_SECTIONS = ("diagnostics.",)
"""Config sections that change nothing a run learns (and that runs recorded before them lack)."""
ADDED_KEYS = {"rollout.adaptive": False, "rollout.adaptive_scale": 1.0, "rollout.adaptive_max_length": 10}
"""Keys added after runs were recorded, with the value such runs behaved as (so that old and new runs group)."""

PAPER_BUDGETS: dict[str, tuple[int, ...]] = {
    "Hopper": (125_000,),
    "Walker2d": (300_000,),
    "HalfCheetah": (400_000,),
    "Ant": (300_000,),
    "Humanoid": (300_000,),
}
"""Env-step budgets of the MBPO paper's learning curves (Janner et al. 2019, Figure 2), by env name."""

STEP_AXIS = "env steps count every real step, the random exploration steps (train.init_steps) included"
"""What every env step in a report counts (also said in the output, to set numbers beside published curves)."""

VALUES_AT_STEPS = (
    "a run's return at an env step between two of its evaluations is linearly interpolated between those two "
    "evaluations (exact at an eval step) and never extrapolated: before its first or after its last evaluation a "
    "run has no value and is left out"
)
"""How a return at a milestone (or any step that is not an eval step) is obtained; also said in the output."""

THRESHOLD_RULE = (
    "steps to threshold: the first env step from which a group's IQM curve stays at or above the threshold up to "
    "the group's final step (a peak it falls back from does not count); the threshold is the baseline's final IQM "
    "return unless --threshold is given"
)
"""How steps to the threshold are measured and where the default threshold comes from; also said in the output."""

MIN_RUNS_FOR_P = 2
"""Runs needed in a group and in its baseline for a probability of improvement (one seed is no evidence)."""

BOOTSTRAP_SEED = 0
N_RESAMPLES = 2000
_MAX_LABEL = 40


class ReportError(ValueError):
    """Bad input to `mbpo compare` (one line; the CLI exits 2)."""


# ---------------------------------------------------------------------------------------------
# Loading (registry access)
# ---------------------------------------------------------------------------------------------


def resolve_refs(registry: Registry, refs: Sequence[str]) -> list[RunInfo]:
    """The runs named by ``refs`` (group names, run ids, id prefixes or run names), first mention first."""
    groups = set(registry.group_names())
    found: dict[str, RunInfo] = {}
    for ref in refs:
        if ref in groups:
            members = registry.runs_in_group(ref)
            if not members:
                raise ReportError(f"group {ref!r} has no runs in {registry.where}")
        else:
            try:
                members = [registry.get_run(ref)]
            except RegistryError as err:
                if str(err).startswith("no run "):
                    raise ReportError(f"no run or group {ref!r} in {registry.where}") from None
                raise
        for run in members:
            found.setdefault(run.id, run)
    return list(found.values())


def load_curves(registry: Registry, runs: Sequence[RunInfo], key: str = metric_keys.EVAL_RETURN) -> dict[str, Curve]:
    """Each run's ``eval_return`` curve (or another metric's): run id -> ``(steps (N,), returns (N,))``."""
    curves: dict[str, Curve] = {}
    for run in runs:
        rows = registry.metrics(run.id, key)
        curves[run.id] = (np.array([r[0] for r in rows], dtype=float), np.array([r[2] for r in rows], dtype=float))
    return curves


# ---------------------------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------------------------


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and key != "kwargs":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_signature(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened config without the keys seeds may differ in (:data:`IGNORED_KEYS`, :data:`IGNORED_SECTIONS`),
    keys added since a run was recorded taking their old behaviour (:data:`ADDED_KEYS`)."""
    flat = {**ADDED_KEYS, **_flatten(config)}
    return {k: v for k, v in flat.items() if k not in IGNORED_KEYS and not k.startswith(IGNORED_SECTIONS)}


def _key(signature: Mapping[str, Any]) -> str:
    return json.dumps(signature, sort_keys=True, default=str)


@dataclass(frozen=True)
class Group:
    """Runs of one configuration (the seeds of one experiment), ordered by seed."""

    name: str
    env_id: str
    algo: str
    preset: str | None
    runs: tuple[RunInfo, ...]
    signature: dict[str, Any] = field(repr=False)

    @property
    def seeds(self) -> list[int]:
        """The runs' seeds."""
        return [r.seed for r in self.runs]


def _default_name(run: RunInfo) -> str:
    return f"{run.preset or run.env_id}-{run.algo}"


def _base_name(runs: Sequence[RunInfo]) -> str:
    registry_groups = {r.group for r in runs}
    variants = {r.variant for r in runs}
    if len(registry_groups) == 1 and None not in registry_groups:
        name = str(runs[0].group)
        return f"{name}/{runs[0].variant}" if len(variants) == 1 and None not in variants else name
    return _default_name(runs[0])


def _disambiguate(base: str, signatures: list[dict[str, Any]]) -> list[str]:
    """Names for groups sharing ``base``: the config keys in which they differ, or a short hash."""
    keys = sorted({k for s in signatures for k in s if len({_key({k: t.get(k)}) for t in signatures}) > 1})
    names = []
    for signature in signatures:
        label = ",".join(f"{k.rsplit('.', 1)[-1]}={signature.get(k)}" for k in keys).replace(" ", "")
        if not label or len(label) > _MAX_LABEL:
            label = hashlib.sha1(_key(signature).encode()).hexdigest()[:6]
        names.append(f"{base}[{label}]")
    if len(set(names)) < len(names):
        names = [f"{base}[{hashlib.sha1(_key(s).encode()).hexdigest()[:6]}]" for s in signatures]
    return names


def group_runs(runs: Sequence[RunInfo]) -> list[Group]:
    """Group runs by configuration (see the module docstring), in order of first appearance."""
    buckets: dict[str, list[RunInfo]] = {}
    signatures: dict[str, dict[str, Any]] = {}
    for run in runs:
        signature = {**config_signature(run.config), "env.id": run.env_id}  # one env per group, whatever the config
        key = _key(signature)
        buckets.setdefault(key, []).append(run)
        signatures[key] = signature
    keys = list(buckets)
    ordered = {k: sorted(buckets[k], key=lambda r: (r.seed, r.created_at, r.id)) for k in keys}
    bases = {k: _base_name(ordered[k]) for k in keys}
    names = dict(bases)
    # A group named only by preset and algo says how it differs from every other group of that preset and algo
    # (a registry group's name says nothing of its config).
    defaults = {k: _default_name(ordered[k][0]) for k in keys}
    for default in sorted({defaults[k] for k in keys if bases[k] == defaults[k]}):
        sharing = [k for k in keys if defaults[k] == default]
        if len(sharing) > 1:
            for k, name in zip(sharing, _disambiguate(default, [signatures[k] for k in sharing]), strict=True):
                if bases[k] == default:
                    names[k] = name
    for base in sorted(set(names.values())):
        clashing = [k for k in keys if names[k] == base]
        if len(clashing) > 1:
            for k, name in zip(clashing, _disambiguate(base, [signatures[k] for k in clashing]), strict=True):
                names[k] = name
    return [
        Group(name=names[k], env_id=ordered[k][0].env_id, algo=ordered[k][0].algo, preset=ordered[k][0].preset,
              runs=tuple(ordered[k]), signature=signatures[k])
        for k in keys
    ]


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MilestoneRow:
    """One group's returns at one env step (NaN CI with fewer than 2 seeds there, all NaN with none)."""

    group: str
    step: int
    n_seeds: int
    mean: float
    iqm: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class EfficiencyRow:
    """One group's sample efficiency against its baseline."""

    group: str
    baseline: str | None
    threshold: float | None
    steps: float | None
    """Env step from which the group's IQM curve stays at or above ``threshold`` (:data:`THRESHOLD_RULE`); None
    if its final return is below it (or no threshold)."""
    searched_until: int
    """The group's final step: the threshold was looked for up to here."""
    seeds_reaching: int
    """Runs whose own curve reaches the threshold and stays at or above it up to their last eval."""
    n_seeds: int
    ratio: float | None
    """Baseline steps / group steps: how many times fewer real steps the group needed."""
    ratio_is_lower_bound: bool
    """True when the baseline does not end at or above the threshold: the ratio uses its final step instead."""
    auc: float
    """IQM over runs of the normalized AUC (see the module docstring); NaN without a common interval."""
    wall_to_threshold: float | None
    """``steps`` divided by the group's env steps per second: an estimate of the wall time to the threshold."""


@dataclass(frozen=True)
class WallRow:
    """Wall-clock cost of one group (means over its runs)."""

    group: str
    n_runs: int
    wall_seconds: float
    env_steps: float
    steps_per_second: float | None


@dataclass(frozen=True)
class FinalRow:
    """A group's final return and its probability of improvement over the baseline."""

    group: str
    step: int
    n_seeds: int
    iqm: float
    ci_low: float
    ci_high: float
    baseline: str | None
    p_improvement: float | None
    p_step: int | None
    """The env step both groups reach, where the probability of improvement is measured."""


@dataclass(frozen=True)
class AucInterval:
    """The shared AUC interval and normalization (NaN interval when the runs share no interval)."""

    start: float
    end: float
    low: float
    high: float


@dataclass(frozen=True)
class Report:
    """Everything `mbpo compare` shows."""

    groups: tuple[Group, ...]
    milestones: tuple[int, ...]
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


@dataclass(frozen=True)
class _GroupCurve:
    """A group's runs on the union of their eval steps up to the group's final step."""

    grid: np.ndarray  # (G,)
    values: np.ndarray  # (R, G)
    iqm: np.ndarray  # (G,)

    @property
    def final_step(self) -> int:
        return int(self.grid[-1])


def _group_curve(runs: Sequence[RunInfo], curves: Mapping[str, Curve]) -> _GroupCurve:
    own = [curves[r.id] for r in runs]
    start = max(float(s[0]) for s, _ in own)
    end = min(float(s[-1]) for s, _ in own)
    steps = np.unique(np.concatenate([s for s, _ in own]))
    grid = steps[(steps >= start) & (steps <= end)]
    if grid.size == 0:  # runs that share no step range: compare at the shortest run's last step only
        grid = np.array([end])
    values = stats.curves_on_grid(own, grid)
    return _GroupCurve(grid=grid, values=values, iqm=np.asarray(stats.iqm(values, axis=0), dtype=float).reshape(-1))


def _at(runs: Sequence[RunInfo], curves: Mapping[str, Curve], step: float) -> np.ndarray:
    """(R',) the returns at ``step`` of the runs whose curves cover it."""
    values = stats.curves_on_grid([curves[r.id] for r in runs], np.array([float(step)]))[:, 0]
    return values[np.isfinite(values)]


def _auc_interval(runs: Sequence[RunInfo], curves: Mapping[str, Curve]) -> AucInterval:
    """The interval every one of ``runs`` covers and their lowest and highest eval return (NaN interval if none)."""
    returns = np.concatenate([curves[r.id][1] for r in runs])
    start = max(float(curves[r.id][0][0]) for r in runs)
    end = min(float(curves[r.id][0][-1]) for r in runs)
    if end <= start:
        start, end = math.nan, math.nan
    return AucInterval(start, end, float(returns.min()), float(returns.max()))


def _span(runs: Sequence[RunInfo], curves: Mapping[str, Curve]) -> str:
    """``first-last`` eval step over ``runs``, for notes."""
    first = min(float(curves[r.id][0][0]) for r in runs)
    last = max(float(curves[r.id][0][-1]) for r in runs)
    return f"{first:,.0f}-{last:,.0f}"


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


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


def is_model_free(algo: str) -> bool:
    """Whether a run's algo label (`mbpo`, `mbpo-td3`, ..., `dhmbpo`, `sac`, `dqn`, ...) names an agent without a
    model."""
    return not algo.startswith(("mbpo", "dhmbpo"))


def paper_budgets(env_ids: Sequence[str]) -> list[int]:
    """The paper's budgets for the given env ids (e.g. ``Hopper-v5`` -> 125,000)."""
    return sorted({b for env in env_ids for b in PAPER_BUDGETS.get(env.split("-v")[0], ())})


def _choose_baselines(groups: Sequence[Group], baseline: Group | None, notes: list[str]) -> dict[str, str | None]:
    envs = list(dict.fromkeys(g.env_id for g in groups))
    chosen: dict[str, str | None] = {}
    for env in envs:
        if baseline is not None:
            chosen[env] = baseline.name if baseline.env_id == env else None
            if baseline.env_id != env:
                notes.append(f"the baseline {baseline.name} runs {baseline.env_id}: no baseline for the {env} groups")
            continue
        free = [g.name for g in groups if g.env_id == env and is_model_free(g.algo)]
        if len(free) == 1:
            chosen[env] = free[0]
        else:
            chosen[env] = None
            if free:
                notes.append(f"several model-free groups for {env} ({', '.join(free)}): choose one with --baseline")
            else:
                notes.append(f"no baseline for {env}: no model-free group (the base agent without a model, e.g. "
                             "algo sac) among the arguments; pass --baseline RUN_OR_GROUP")
    return chosen


def _notes_on_runs(groups: Sequence[Group]) -> list[str]:
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


def build_report(  # noqa: C901 - one pass per table, kept together so every number has one definition
    runs: Sequence[RunInfo],
    curves: Mapping[str, Curve],
    *,
    baseline_runs: Sequence[RunInfo] | None = None,
    at: Sequence[int] | None = None,
    threshold: float | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Report:
    """Compare the groups formed by ``runs`` (plus ``baseline_runs``); see the module docstring.

    Args:
        runs: the runs to compare (their groups are formed by :func:`group_runs`).
        curves: run id -> ``(steps (N,), returns (N,))`` eval curve, steps sorted.
        baseline_runs: runs of the baseline group (``--baseline``); None picks the model-free group per env.
        at: env steps for the returns table (default: :func:`stats.milestones` plus the paper's budgets,
            those that every run covers).
        threshold: return to reach and hold (default: the baseline's final IQM return).
        n_resamples: bootstrap resamples per interval.
        seed: bootstrap seed; the same inputs give the same report.

    Raises:
        ReportError: no run with eval returns, a baseline spanning several configurations, bad ``at``.
    """
    notes: list[str] = []
    everything = list({r.id: r for r in [*runs, *(baseline_runs or [])]}.values())
    usable = [r for r in everything if curves.get(r.id) is not None and len(curves[r.id][0]) > 0]
    kept = {r.id for r in usable}
    for run in everything:
        if run.id not in kept:
            notes.append(f"run {run.id} ({run.name}) has no evaluation returns yet: left out")
    if not usable:
        raise ReportError("none of the runs has evaluation returns yet")
    groups = group_runs(usable)
    notes.extend(_notes_on_runs(groups))
    baseline: Group | None = None
    if baseline_runs is not None:
        ids = {r.id for r in baseline_runs}
        containing = [g for g in groups if ids & {r.id for r in g.runs}]
        if len(containing) != 1:
            raise ReportError(
                f"--baseline names runs of {len(containing)} configurations "
                f"({', '.join(g.name for g in containing) or 'none with eval returns'}); name one group of seeds"
            )
        baseline = containing[0]
    baselines = _choose_baselines(groups, baseline, notes)
    by_name = {g.name: g for g in groups}
    group_curves = {g.name: _group_curve(g.runs, curves) for g in groups}

    # -- returns at milestones (by default only steps every run covers: no row without data)
    shortest = min(int(curves[r.id][0][-1]) for r in usable)
    first_common = max(float(curves[r.id][0][0]) for r in usable)
    if at:
        if any(s <= 0 for s in at):
            raise ReportError("--at: env steps must be positive")
        milestones = sorted({int(s) for s in at})
    elif first_common <= shortest:
        milestones = stats.milestones(shortest, paper_budgets([g.env_id for g in groups]), first_step=first_common)
        if not milestones:
            milestones = [shortest]
    else:
        milestones = sorted({gc.final_step for gc in group_curves.values()})
        notes.append(f"the runs share no env-step range (one ends at {shortest:,}, another starts at "
                     f"{first_common:,.0f}): the milestones are each group's final step")
    returns_rows = []
    for group in groups:
        summary = stats.summarize_group(group.name, [curves[r.id] for r in group.runs], milestones,
                                        n_resamples=n_resamples, seed=seed)
        for i, step in enumerate(summary.steps):
            returns_rows.append(MilestoneRow(group.name, step, summary.n_seeds[i], summary.mean[i], summary.iqm[i],
                                             summary.ci_low[i], summary.ci_high[i]))
        empty = [step for i, step in enumerate(summary.steps) if summary.n_seeds[i] == 0]
        if empty:
            notes.append(f"no run of {group.name} has a value at env step {', '.join(f'{s:,}' for s in empty)} "
                         f"(its evaluations span env steps {_span(group.runs, curves)}; never extrapolated): "
                         "no data")

    # -- final returns
    finals: dict[str, FinalRow] = {}
    for group in groups:
        gc = group_curves[group.name]
        low, high = stats.bootstrap_ci(gc.values[:, -1], n_resamples=n_resamples, seed=seed)
        finals[group.name] = FinalRow(group.name, gc.final_step, len(group.runs), float(gc.iqm[-1]), low, high,
                                      None, None, None)
    too_few = []
    for group in groups:
        base_name = baselines.get(group.env_id)
        if base_name is None or base_name == group.name:
            finals[group.name] = replace(finals[group.name], baseline=base_name)
            continue
        p_step = min(group_curves[group.name].final_step, group_curves[base_name].final_step)
        x, y = _at(group.runs, curves, p_step), _at(by_name[base_name].runs, curves, p_step)
        p = None
        if min(x.size, y.size) >= MIN_RUNS_FOR_P:
            p = stats.probability_of_improvement(x, y)
        else:
            too_few.append(f"{group.name} ({_runs(x.size)} against {_runs(y.size)} of {base_name} at env step "
                           f"{p_step:,})")
        finals[group.name] = replace(finals[group.name], baseline=base_name, p_improvement=p, p_step=p_step)
    if too_few:
        notes.append(f"P(better than baseline) is n/a (needs >= {MIN_RUNS_FOR_P} runs per group: a single run says "
                     f"nothing about the spread over seeds) for {'; '.join(too_few)}")

    # -- wall clock
    wall_rows = []
    for group in groups:
        rates = [r.env_steps / r.wall_seconds for r in group.runs if r.wall_seconds > 0]
        wall_rows.append(WallRow(group.name, len(group.runs), float(np.mean([r.wall_seconds for r in group.runs])),
                                 float(np.mean([r.env_steps for r in group.runs])),
                                 float(np.mean(rates)) if rates else None))
    rate_of = {w.group: w.steps_per_second for w in wall_rows}

    # -- sample efficiency (the AUC is normalized per env: returns of different envs have different scales)
    aucs_by_env: dict[str, AucInterval] = {}
    for env in baselines:
        aucs_by_env[env] = _auc_interval([r for g in groups if g.env_id == env for r in g.runs], curves)
        if math.isnan(aucs_by_env[env].start):
            runs_of = "the runs" if len(baselines) == 1 else f"the {env} runs"
            notes.append(f"{runs_of} share no env-step interval with two or more evals: no normalized AUC")
    thresholds: dict[str, float | None] = {}
    for env, base_name in baselines.items():
        thresholds[env] = threshold if threshold is not None else (
            finals[base_name].iqm if base_name is not None else None)
    reach: dict[str, float | None] = {}
    for group in groups:
        thr = thresholds[group.env_id]
        gc = group_curves[group.name]
        reach[group.name] = None if thr is None else stats.steps_to_threshold(gc.grid, gc.iqm, thr)
    efficiency_rows = []
    for group in groups:
        thr = thresholds[group.env_id]
        base_name = baselines.get(group.env_id)
        steps = reach[group.name]
        ratio, lower = None, False
        if base_name is not None and steps is not None and steps > 0:
            base_steps = reach[base_name]
            if base_steps is not None:
                ratio = base_steps / steps
            else:
                ratio, lower = group_curves[base_name].final_step / steps, True
        reaching = 0 if thr is None else sum(
            stats.steps_to_threshold(*curves[r.id], thr) is not None for r in group.runs)
        auc = aucs_by_env[group.env_id]
        if math.isnan(auc.start):
            auc_value = math.nan
        else:
            aucs = [stats.normalized_auc(*curves[r.id], auc.start, auc.end, auc.low, auc.high) for r in group.runs]
            auc_value = float(stats.iqm(np.array(aucs)))
        rate = rate_of[group.name]
        wall = steps / rate if steps is not None and rate else None
        efficiency_rows.append(EfficiencyRow(group.name, base_name, thr, steps, group_curves[group.name].final_step,
                                             reaching, len(group.runs), ratio, lower, auc_value, wall))

    return Report(
        groups=tuple(groups),
        milestones=tuple(milestones),
        returns=tuple(returns_rows),
        efficiency=tuple(efficiency_rows),
        wall=tuple(wall_rows),
        final=tuple(finals[g.name] for g in groups),
        auc=aucs_by_env,
        baselines=baselines,
        threshold_source="--threshold" if threshold is not None else "baseline final IQM",
        notes=tuple(notes),
        warnings=tuple(_env_warnings(groups, threshold)),
    )


# ---------------------------------------------------------------------------------------------
# Output helpers: JSON, CSV rows and plot data
# ---------------------------------------------------------------------------------------------


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


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (NaN as null): the same numbers as the tables, unrounded."""
    return _clean({
        "groups": [
            {"name": g.name, "env": g.env_id, "algo": g.algo, "preset": g.preset, "n_seeds": len(g.runs),
             "runs": [{"id": r.id, "name": r.name, "seed": r.seed, "status": r.display_status,
                       "registry_group": r.group, "variant": r.variant} for r in g.runs]}
            for g in report.groups
        ],
        "milestones": list(report.milestones),
        "returns": [asdict(r) for r in report.returns],
        "baselines": dict(report.baselines),
        "threshold_source": report.threshold_source,
        "threshold_rule": THRESHOLD_RULE,
        "efficiency": [asdict(r) for r in report.efficiency],
        "auc_interval": asdict(next(iter(report.auc.values()))) if len(report.auc) == 1 else None,
        "auc_intervals": {env: asdict(interval) for env, interval in report.auc.items()},
        "wall_clock": [asdict(r) for r in report.wall],
        "final": [asdict(r) for r in report.final],
        "notes": list(report.notes),
        "warnings": list(report.warnings),
        "steps": STEP_AXIS,
        "interpolation": VALUES_AT_STEPS,
    })


def long_rows(report: Report, curves: Mapping[str, Curve]) -> list[tuple[str, str, int, int, float]]:
    """``(run_id, group, seed, step, return)`` for every eval point of every compared run."""
    rows: list[tuple[str, str, int, int, float]] = []
    for group in report.groups:
        for run in group.runs:
            steps, values = curves[run.id]
            rows.extend((run.id, group.name, run.seed, int(s), float(v)) for s, v in zip(steps, values, strict=True))
    return rows


def plot_data(report: Report, curves: Mapping[str, Curve]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Group name -> ``(grid (G,), returns (R, G))`` on the union of all eval steps (for :mod:`mbpo_cli.plots`)."""
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

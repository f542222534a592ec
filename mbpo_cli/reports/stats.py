"""Statistics for honest comparisons of RL learning curves (in the spirit of rliable).

A learning curve is one run's (seed's) evaluation history: a sorted array of environment steps
``steps`` (N,) and the eval returns measured at those steps ``returns`` (N,). The helpers here put
curves on a common step grid without ever extrapolating, aggregate over runs with the interquartile
mean (IQM), attach percentile-bootstrap confidence intervals over runs, and compute per-run scalars
(steps to reach and hold a threshold, normalized area under the curve, probability of improvement).

Reference for the definitions: Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (NeurIPS 2021).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

Curve = tuple[np.ndarray, np.ndarray]
"""One run: ``(steps (N,), returns (N,))`` with ``steps`` sorted in increasing order."""

Statistic = Callable[..., float | np.ndarray]
"""An aggregate ``f(x, axis=...)`` such as :func:`iqm` or :func:`numpy.mean`."""


def _as_curve(steps: np.ndarray, returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one run's curve and return it as two float arrays of shape (N,)."""
    s = np.asarray(steps, dtype=float)
    r = np.asarray(returns, dtype=float)
    if s.ndim != 1 or r.ndim != 1 or s.shape != r.shape:
        raise ValueError(f"steps and returns must be 1-d of equal length, got {s.shape} and {r.shape}")
    if s.size > 1 and np.any(np.diff(s) < 0):
        raise ValueError("steps must be sorted in increasing order")
    return s, r


def interpolate_curve(steps: np.ndarray, returns: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linearly interpolate one run's curve onto ``grid``.

    Args:
        steps: (N,) sorted eval env steps of the run.
        returns: (N,) eval returns at ``steps``.
        grid: (G,) env steps to evaluate the curve at.

    Returns:
        (G,) float array. Grid points before the run's first eval step or after its last one are NaN:
        the curve is never extrapolated. A run with no eval points gives all NaN.
    """
    s, r = _as_curve(steps, returns)
    g = np.asarray(grid, dtype=float)
    if g.ndim != 1:
        raise ValueError(f"grid must be 1-d, got shape {g.shape}")
    if s.size == 0:
        return np.full(g.shape, np.nan)
    out = np.interp(g, s, r)
    out[(g < s[0]) | (g > s[-1])] = np.nan
    return out


def curves_on_grid(runs: Sequence[Curve], grid: np.ndarray) -> np.ndarray:
    """Interpolate several runs onto a common grid (see :func:`interpolate_curve`).

    Args:
        runs: R runs, each ``(steps (N_r,), returns (N_r,))``.
        grid: (G,) env steps.

    Returns:
        (R, G) float array, NaN where a run has no data (before its first or after its last eval).
    """
    g = np.asarray(grid, dtype=float)
    if not runs:
        return np.empty((0, g.size))
    return np.stack([interpolate_curve(s, r, g) for s, r in runs])


def iqm(x: np.ndarray, axis: int = 0) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle 50% of values (``scipy.stats.trim_mean(x, 0.25)``).

    Callers pass complete data: NaN values are not skipped and propagate into the result.

    Args:
        x: array of values; e.g. (R,) final returns or (R, G) curves with ``axis=0``.
        axis: axis to aggregate over.

    Returns:
        A float for 1-d input, else an array with ``axis`` removed, e.g. (G,) for (R, G) input.
        NaN where there are no values along ``axis``.
    """
    a = np.asarray(x, dtype=float)
    if a.shape[axis] == 0:
        reduced = np.full(np.delete(a.shape, axis), np.nan)
        return float(reduced) if reduced.ndim == 0 else reduced
    result = _scipy_stats.trim_mean(a, 0.25, axis=axis)
    return float(result) if np.ndim(result) == 0 else np.asarray(result)


def _strata(values: np.ndarray | Sequence[np.ndarray] | Sequence[float]) -> list[np.ndarray]:
    """Split bootstrap input into per-task 1-d float arrays (see :func:`bootstrap_ci`)."""
    if isinstance(values, np.ndarray):
        if values.ndim == 1:
            return [values.astype(float)]
        if values.ndim == 2:
            return list(values.astype(float))
        raise ValueError(f"values must be 1-d or (tasks, runs), got shape {values.shape}")
    if all(np.ndim(v) == 0 for v in values):
        return [np.asarray(values, dtype=float)]
    return [np.asarray(v, dtype=float).ravel() for v in values]


def bootstrap_ci(
    values: np.ndarray | Sequence[np.ndarray] | Sequence[float],
    statistic: Statistic = iqm,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``statistic`` over runs (seeds).

    Args:
        values: either one (R,) array (or list of numbers) of per-run scores, e.g. final returns of
            one task, or several tasks as a list of per-task (R_t,) arrays or a (T, R) array with one
            row per task. With several tasks the bootstrap is stratified: each resample
            draws R_t runs with replacement within every task, and ``statistic`` is computed on the
            concatenation of all tasks' resampled runs.
        statistic: aggregate called as ``statistic(x, axis=1)`` on a (n_resamples, sum R_t) array;
            must return (n_resamples,). Defaults to :func:`iqm`.
        confidence: coverage of the two-sided interval, in (0, 1).
        n_resamples: number of bootstrap resamples.
        seed: seed for ``np.random.default_rng``; the same inputs and seed give the same interval.

    Returns:
        ``(low, high)``. ``(nan, nan)`` when no task has at least 2 runs (a single seed carries no
        information about run-to-run variability; callers print "n/a (1 seed)").
        Values must be finite: callers pass complete data.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    strata = [s for s in _strata(values) if s.size > 0]
    if not strata or max(s.size for s in strata) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    resampled = np.concatenate(
        [s[rng.integers(0, s.size, size=(n_resamples, s.size))] for s in strata], axis=1
    )  # (n_resamples, sum R_t)
    boot = np.asarray(statistic(resampled, axis=1), dtype=float)
    alpha = 1.0 - confidence
    low, high = np.percentile(boot, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return (float(low), float(high))


def steps_to_threshold(steps: np.ndarray, returns: np.ndarray, threshold: float) -> float | None:
    """First env step from which the linearly interpolated curve stays at or above ``threshold`` up to its last
    point: a peak the curve falls back from (below the threshold) does not count.

    Interpolates between the last eval point below the threshold and the point after it.

    Args:
        steps: (N,) sorted eval env steps of one run (or of a group's IQM curve).
        returns: (N,) finite eval returns at ``steps``.
        threshold: return to reach and hold.

    Returns:
        The (fractional) env step, ``steps[0]`` if no eval is below the threshold, or None if the last eval is
        below it (the curve does not end at or above the threshold).
    """
    s, r = _as_curve(steps, returns)
    below = np.flatnonzero(r < threshold)
    if below.size == 0:
        return float(s[0]) if s.size else None
    i = int(below[-1])
    if i == s.size - 1:
        return None
    s0, s1, r0, r1 = s[i], s[i + 1], r[i], r[i + 1]  # r0 < threshold <= r1, so r1 > r0
    return float(s0 + (threshold - r0) / (r1 - r0) * (s1 - s0))


def normalized_auc(
    steps: np.ndarray, returns: np.ndarray, start: float, end: float, low: float, high: float
) -> float:
    """Normalized area under one run's curve between ``start`` and ``end`` env steps.

    The curve is linearly interpolated at ``start`` and ``end`` and integrated with the trapezoid
    rule. The area is divided by ``(end - start)`` (giving the mean return over the interval), then
    normalized as ``(mean - low) / (high - low)``: with ``low``/``high`` the task's score range the
    result is the mean normalized return over the interval, in [0, 1] for returns within the range.

    If ``end`` is past the run's last eval step the interval is cut at the last step (never
    extrapolated), so runs of different lengths should be compared with an ``end`` they all reach.
    If ``low == high`` the unnormalized mean return over the interval is returned.

    Args:
        steps: (N,) sorted eval env steps of one run.
        returns: (N,) finite eval returns at ``steps``.
        start: first env step of the interval; must be >= ``steps[0]``.
        end: last env step of the interval.
        low: score mapped to 0.
        high: score mapped to 1.

    Returns:
        The normalized mean return over ``[start, min(end, steps[-1])]``.
    """
    s, r = _as_curve(steps, returns)
    if s.size == 0:
        raise ValueError("the run has no eval points")
    end = min(end, float(s[-1]))
    if start < s[0]:
        raise ValueError(f"start {start} is before the run's first eval step {s[0]}")
    if end <= start:
        raise ValueError(f"empty interval: start {start} >= end {end}")
    inside = (s > start) & (s < end)
    x = np.concatenate([[start], s[inside], [end]])
    y = np.concatenate([[np.interp(start, s, r)], r[inside], [np.interp(end, s, r)]])
    mean = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0)) / (end - start)
    if high == low:
        return mean
    return (mean - low) / (high - low)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + 0.5 P(X = Y) over all pairs: the Mann-Whitney U statistic divided by n * m.

    Args:
        x: (n,) per-run scores of group X (e.g. final returns).
        y: (m,) per-run scores of group Y.

    Returns:
        Probability in [0, 1] that a random run of X beats a random run of Y, ties counting half.
    """
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("both groups need at least one run")
    greater = a[:, None] > b[None, :]  # (n, m)
    equal = a[:, None] == b[None, :]
    return float(np.mean(greater + 0.5 * equal))


def milestones(shortest_last_step: int, paper_budgets: Sequence[int] = (), first_step: float = 0) -> list[int]:
    """Env steps at which to compare groups: only steps that every compared run covers.

    Args:
        shortest_last_step: last eval step of the shortest run being compared.
        paper_budgets: env-step budgets reported in a paper; kept only if <= ``shortest_last_step``.
        first_step: the latest first eval step of the runs; earlier steps are dropped (a run has no
            value before its first evaluation).

    Returns:
        Sorted unique positive steps in ``[first_step, shortest_last_step]``: 25/50/75/100% of
        ``shortest_last_step`` (rounded half up) plus the reachable paper budgets. Empty when
        ``first_step > shortest_last_step`` (the runs share no step range).
    """
    if shortest_last_step < 0:
        raise ValueError(f"shortest_last_step must be >= 0, got {shortest_last_step}")
    fractions = [int(np.floor(f * shortest_last_step + 0.5)) for f in (0.25, 0.5, 0.75, 1.0)]
    budgets = [int(b) for b in paper_budgets if b <= shortest_last_step]
    return sorted({m for m in fractions + budgets if m > 0 and m >= first_step})


@dataclass(frozen=True)
class GroupSummary:
    """Per-milestone aggregate of one group of runs; every tuple has one entry per milestone (M,).

    Only runs that reach a milestone count there, so ``n_seeds`` can shrink at later milestones.
    CI bounds are NaN where fewer than 2 runs reach the milestone; all stats are NaN with 0 runs.
    """

    name: str
    steps: tuple[int, ...]
    n_seeds: tuple[int, ...]
    mean: tuple[float, ...]
    iqm: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]


def summarize_group(
    name: str,
    runs: Sequence[Curve],
    grid_steps: Sequence[int],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> GroupSummary:
    """Mean, IQM and 95% bootstrap CI of the IQM of a group's runs at each milestone step.

    Args:
        name: group label.
        runs: R runs, each ``(steps (N_r,), returns (N_r,))``.
        grid_steps: (M,) milestone env steps, e.g. from :func:`milestones`.
        n_resamples: bootstrap resamples per milestone.
        seed: bootstrap seed (see :func:`bootstrap_ci`).

    Returns:
        A :class:`GroupSummary` with one entry per milestone.
    """
    values = curves_on_grid(runs, np.asarray(grid_steps, dtype=float))  # (R, M)
    n_seeds: list[int] = []
    means: list[float] = []
    iqms: list[float] = []
    lows: list[float] = []
    highs: list[float] = []
    for column in values.T:
        present = column[np.isfinite(column)]
        low, high = bootstrap_ci(present, n_resamples=n_resamples, seed=seed)
        n_seeds.append(int(present.size))
        means.append(float(np.mean(present)) if present.size else float("nan"))
        iqms.append(float(iqm(present)))
        lows.append(low)
        highs.append(high)
    return GroupSummary(
        name=name,
        steps=tuple(int(s) for s in grid_steps),
        n_seeds=tuple(n_seeds),
        mean=tuple(means),
        iqm=tuple(iqms),
        ci_low=tuple(lows),
        ci_high=tuple(highs),
    )

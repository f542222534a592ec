"""The final-return table: each group's final return and its probability of improvement over the baseline.

* **Final return** of a group: the IQM over runs of the return at its final step (the last eval step every one of
  its runs reached), with a 95% percentile-bootstrap CI.
* **Probability of improvement** over the baseline: P(a run of the group beats a run of the baseline), ties
  counting half, with both measured at the last step both groups reach; None (n/a) unless both groups have at
  least :data:`MIN_RUNS_FOR_P` runs there.

On the wall-clock axis (``--x wall``) "step" reads "training time": the final return is at the training time every
run of the group reached, and the probability of improvement compares the groups at the same training time.
"""

from __future__ import annotations

from dataclasses import dataclass

from mbpo_cli.reports import stats
from mbpo_cli.reports.compare.comparison import Comparison
from mbpo_cli.reports.compare.curves import values_at
from mbpo_cli.reports.compare.groups import Group

MIN_RUNS_FOR_P = 2
"""Runs needed in a group and in its baseline for a probability of improvement (one seed is no evidence)."""


@dataclass(frozen=True)
class FinalRow:
    """A group's final return and its probability of improvement over the baseline."""

    group: str
    step: float
    """The group's final step (an int), or on the wall axis its final training time in seconds."""
    n_seeds: int
    iqm: float
    ci_low: float
    ci_high: float
    baseline: str | None
    p_improvement: float | None
    p_step: float | None
    """The env step (an int; on the wall axis the training time) both groups reach, where the probability of
    improvement is measured."""


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _final_row(comparison: Comparison, group: Group, n_resamples: int, seed: int) -> tuple[FinalRow, str | None]:
    """``group``'s row, and what it lacks when its P(improvement) is n/a for too few runs (else None)."""
    curve = comparison.curve(group)
    low, high = stats.bootstrap_ci(curve.values[:, -1], n_resamples=n_resamples, seed=seed)
    base = comparison.baseline_of(group)
    p, p_step, too_few = None, None, None
    if base is not None and base.name != group.name:
        p_step = min(curve.final_step, comparison.curve(base).final_step)
        x, y = values_at(group.runs, comparison.curves, p_step), values_at(base.runs, comparison.curves, p_step)
        if min(x.size, y.size) >= MIN_RUNS_FOR_P:
            p = stats.probability_of_improvement(x, y)
        else:
            too_few = (f"{group.name} ({_runs(x.size)} against {_runs(y.size)} of {base.name} at "
                       f"{comparison.x.at(p_step)})")
    row = FinalRow(group.name, curve.final_step, len(group.runs), float(curve.iqm[-1]), low, high,
                   None if base is None else base.name, p, p_step)
    return row, too_few


def final_rows(comparison: Comparison, n_resamples: int, seed: int) -> tuple[list[FinalRow], list[str]]:
    """Every group's row, and a note naming the groups whose P(improvement) is n/a for too few runs."""
    rows: list[FinalRow] = []
    too_few: list[str] = []
    for group in comparison.groups:
        row, lacking = _final_row(comparison, group, n_resamples, seed)
        rows.append(row)
        too_few += [] if lacking is None else [lacking]
    if not too_few:
        return rows, []
    return rows, [f"P(better than baseline) is n/a (needs >= {MIN_RUNS_FOR_P} runs per group: a single run says "
                  f"nothing about the spread over seeds) for {'; '.join(too_few)}"]

"""The Rich tables of a compare report (`mbpo compare`, and `mbpo ablate` at its end): rendering only, the numbers
come from `mbpo_cli.reports.compare`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from mbpo_cli.cli.fit import Col, Fit, fit, fitted, fmt_number
from mbpo_cli.reports.axis import Axis, fmt_duration

if TYPE_CHECKING:
    from mbpo_cli.reports.compare import MilestoneRow, Report


def compare_tables(report: Report, width: int) -> list[Table]:
    """The Rich tables of a compare report (see mbpo_cli.reports.compare for the definitions), for a terminal `width`
    columns wide: numbers whole, group names shortened in the middle if need be (inside an ablation, the variant
    alone); on the wall axis, training times where the steps would be."""
    names, ablation = short_group_names([g.name for g in report.groups])

    def name(group: str | None) -> str:
        return "-" if group is None else names.get(group, group)

    return [_returns_table(report, name, ablation, width), _efficiency_table(report, name, width),
            _wall_table(report, name, width), _final_table(report, name, width)]


def short_group_names(groups: list[str]) -> tuple[dict[str, str], str | None]:
    """Group name -> the name to show, and the ablation whose prefix was left out: the groups of one ablation
    (`GROUP/variant`) are shown by their variant alone when that leaves every name distinct."""
    prefixes = {g.split("/", 1)[0] for g in groups if "/" in g}
    if len(prefixes) != 1:
        return {}, None
    prefix = prefixes.pop()
    short = {g: g.removeprefix(f"{prefix}/") for g in groups}
    if len(set(short.values())) < len(groups):
        return {}, None
    return short, prefix


GROUP = Col("group", Fit.NAME, keep=30)
"""The group column of every compare table."""


def _returns_table(report: Report, name: Callable[[str | None], str], ablation: str | None, width: int) -> Table:
    caption = None if ablation is None else f"groups of ablation {ablation} are shown by their variant"
    table = Table(title="Eval return at milestones (95% CI: bootstrap of the IQM over seeds)", caption=caption)
    rows: list[list[str]] = []
    ends: list[bool] = []  # whether each row but the last ends its group's section
    previous = None
    for row in report.returns:
        if row.n_seeds == 0:
            ci = "no data"
        elif row.n_seeds == 1:
            ci = "n/a (1 seed)"
        else:
            ci = f"[{row.ci_low:,.1f}, {row.ci_high:,.1f}]"
        if rows:
            ends.append(row.group != previous)
        rows.append([name(row.group) if row.group != previous else "", report.x.fmt(row.step), str(row.n_seeds),
                     fmt_number(row.mean), fmt_number(row.iqm), ci, *_reference_cells(row)])
        previous = row.group
    columns = [GROUP, Col(report.x.point_name), Col("seeds"), Col("mean"), Col("IQM"),
               Col("95% CI", Fit.WRAP, "right")]
    if report.reference is not None:
        columns += [Col("published mean [low, high]", Fit.WRAP, "right"), Col("seeds in range", Fit.WRAP, "right")]
        table.caption = "; ".join(filter(None, [caption, f"published: {escape(report.reference.label)}"]))
    for cells, end in zip(fit(table, columns, rows, width), [*ends, False], strict=True):
        table.add_row(*cells, end_section=end)
    return table


def _reference_cells(row: MilestoneRow) -> list[str]:
    """The published mean and range beside a returns row, and its seeds inside the range (none without a
    reference; blank where the reference has no value)."""
    point = row.reference
    if point is None:
        return []
    if point.mean is None or point.low is None or point.high is None or point.seeds_inside is None:
        return ["", ""]
    return [f"{point.mean:,.1f} [{point.low:,.1f}, {point.high:,.1f}]", f"{point.seeds_inside}/{point.n_seeds} in"]


EFFICIENCY_WORDS = {
    Axis.STEPS: ("Sample efficiency: env steps", "steps to threshold", "x fewer real steps"),
    Axis.WALL: ("Time efficiency: training time", "time to threshold", "x less training time"),
}
"""Per axis: the efficiency table's title start, and its columns for the time to the threshold and the ratio."""


def _efficiency_table(report: Report, name: Callable[[str | None], str], width: int) -> Table:
    pairs = {(r.baseline, r.threshold) for r in report.efficiency}
    single = len(pairs) == 1
    baseline, threshold = next(iter(pairs)) if single else (None, None)
    what, to_threshold, fewer = EFFICIENCY_WORDS[report.x]
    if single and threshold is not None:
        source = "--threshold" if report.threshold_source == "--threshold" else f"final IQM of {name(baseline)}"
        title = escape(f"{what} until the IQM curve reaches threshold {threshold:,.1f} "
                       f"({source}) and stays at or above it")
    else:
        title = f"{what} until the IQM curve reaches its threshold and stays at or above it"
    columns = [GROUP] + ([] if single else [Col("baseline", Fit.NAME, keep=30), Col("threshold")])
    columns += [Col(to_threshold, Fit.WRAP, "right"), Col("seeds reaching"),
                Col(fewer, Fit.WRAP, "right"), Col("norm. AUC (IQM)")]
    rows = []
    for row in report.efficiency:
        if row.threshold is None:
            steps = "n/a (no threshold)"
        elif row.steps is None:
            steps = f"below it at {report.x.fmt(row.searched_until)}"
        else:
            steps = report.x.fmt(row.steps)
        if row.baseline is None:
            ratio = "n/a (no baseline)"
        elif row.group == row.baseline:
            ratio = "1.00x (baseline)"
        elif row.ratio is None:
            ratio = "-"
        else:
            ratio = f"{'> ' if row.ratio_is_lower_bound else ''}{row.ratio:.2f}x"
        reaching = "-" if row.threshold is None else f"{row.seeds_reaching}/{row.n_seeds}"
        cells = [name(row.group)] + ([] if single else [name(row.baseline), fmt_number(row.threshold)])
        rows.append([*cells, steps, reaching, ratio, fmt_number(row.auc, ".3f")])
    return fitted(Table(title=title), columns, rows, width)


def _wall_table(report: Report, name: Callable[[str | None], str], width: int) -> Table:
    """The wall-clock table; its estimate of the wall time to the threshold only on the env-step axis (on the wall
    axis the efficiency table measures it)."""
    estimate = report.x is Axis.STEPS
    columns = [GROUP, Col("runs"), Col("wall time", Fit.WRAP, "right"), Col("env steps"), Col("env steps/s")]
    columns += [Col("~wall to threshold", Fit.WRAP, "right")] if estimate else []
    to_threshold = {row.group: row.wall_to_threshold for row in report.efficiency}
    rows = [[name(row.group), str(row.n_runs), fmt_duration(row.wall_seconds), fmt_number(row.env_steps, ",.0f"),
             fmt_number(row.steps_per_second, ",.1f")]
            + ([fmt_duration(to_threshold.get(row.group))] if estimate else []) for row in report.wall]
    return fitted(Table(title="Wall-clock time (mean per run)"), columns, rows, width)


def _final_table(report: Report, name: Callable[[str | None], str], width: int) -> Table:
    x = report.x
    at = "at step" if x is Axis.STEPS else "at time"
    columns = [GROUP, Col(x.end_name), Col("seeds"), Col("IQM"), Col("95% CI", Fit.WRAP, "right"),
               Col("P(better than baseline)", Fit.WRAP, "right"), Col(at)]
    rows = []
    for row in report.final:
        ci = "n/a (1 seed)" if row.n_seeds < 2 else f"[{row.ci_low:,.1f}, {row.ci_high:,.1f}]"
        if row.baseline is None:
            p = "n/a (no baseline)"
        elif row.group == row.baseline:
            p = "(baseline)"
        elif row.p_improvement is None and row.p_step is not None:
            p = "n/a (< 2 runs)"
        else:
            p = fmt_number(row.p_improvement, ".2f", "n/a")
        rows.append([name(row.group), x.fmt(row.step), str(row.n_seeds), fmt_number(row.iqm), ci, p,
                     "-" if row.p_step is None else x.fmt(row.p_step)])
    title = (f"Final return (IQM at each group's last common eval {'step' if x is Axis.STEPS else 'time'}) and "
             "P(improvement) over the baseline")
    return fitted(Table(title=title), columns, rows, width)

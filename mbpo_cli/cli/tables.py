"""Rich tables of compare reports and ablation plans (rendering only; the numbers come from the reports)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.table import Table

from mbpo_cli.cli.fit import Col, Fit, fit, fitted
from mbpo_cli.sweeps.ablation import TaskState


def fmt_number(value: float | None, spec: str = ",.1f", missing: str = "-") -> str:
    return missing if value is None or value != value else format(value, spec)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def compare_tables(report: Any, width: int) -> list[Table]:
    """The Rich tables of a compare report (see mbpo_cli.report for the definitions), for a terminal `width`
    columns wide: numbers whole, group names shortened in the middle if need be (inside an ablation, the variant
    alone)."""
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


def _returns_table(report: Any, name: Callable[[str | None], str], ablation: str | None, width: int) -> Table:
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
        rows.append([name(row.group) if row.group != previous else "", f"{row.step:,}", str(row.n_seeds),
                     fmt_number(row.mean), fmt_number(row.iqm), ci])
        previous = row.group
    columns = [GROUP, Col("env step"), Col("seeds"), Col("mean"), Col("IQM"), Col("95% CI", Fit.WRAP, "right")]
    for cells, end in zip(fit(table, columns, rows, width), [*ends, False], strict=True):
        table.add_row(*cells, end_section=end)
    return table


def _efficiency_table(report: Any, name: Callable[[str | None], str], width: int) -> Table:
    pairs = {(r.baseline, r.threshold) for r in report.efficiency}
    single = len(pairs) == 1
    baseline, threshold = next(iter(pairs)) if single else (None, None)
    if single and threshold is not None:
        source = "--threshold" if report.threshold_source == "--threshold" else f"final IQM of {name(baseline)}"
        title = escape(f"Sample efficiency: env steps until the IQM curve reaches threshold {threshold:,.1f} "
                       f"({source}) and stays at or above it")
    else:
        title = "Sample efficiency: env steps until the IQM curve reaches its threshold and stays at or above it"
    columns = [GROUP] + ([] if single else [Col("baseline", Fit.NAME, keep=30), Col("threshold")])
    columns += [Col("steps to threshold", Fit.WRAP, "right"), Col("seeds reaching"),
                Col("x fewer real steps", Fit.WRAP, "right"), Col("norm. AUC (IQM)")]
    rows = []
    for row in report.efficiency:
        if row.threshold is None:
            steps = "n/a (no threshold)"
        elif row.steps is None:
            steps = f"below it at {row.searched_until:,}"
        else:
            steps = f"{row.steps:,.0f}"
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


def _wall_table(report: Any, name: Callable[[str | None], str], width: int) -> Table:
    columns = [GROUP, Col("runs"), Col("wall time", Fit.WRAP, "right"), Col("env steps"), Col("env steps/s"),
               Col("~wall to threshold", Fit.WRAP, "right")]
    to_threshold = {row.group: row.wall_to_threshold for row in report.efficiency}
    rows = [[name(row.group), str(row.n_runs), fmt_duration(row.wall_seconds), fmt_number(row.env_steps, ",.0f"),
             fmt_number(row.steps_per_second, ",.1f"), fmt_duration(to_threshold.get(row.group))]
            for row in report.wall]
    return fitted(Table(title="Wall-clock time (mean per run)"), columns, rows, width)


def _final_table(report: Any, name: Callable[[str | None], str], width: int) -> Table:
    columns = [GROUP, Col("final step"), Col("seeds"), Col("IQM"), Col("95% CI", Fit.WRAP, "right"),
               Col("P(better than baseline)", Fit.WRAP, "right"), Col("at step")]
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
        rows.append([name(row.group), f"{row.step:,}", str(row.n_seeds), fmt_number(row.iqm), ci, p,
                     "-" if row.p_step is None else f"{row.p_step:,}"])
    title = "Final return (IQM at each group's last common eval step) and P(improvement) over the baseline"
    return fitted(Table(title=title), columns, rows, width)


def diff_table(plan: Any) -> Table:
    from mbpo_cli.sweeps.variants import describe_value

    table = Table(title=f"Variants of {plan.group}: config differences from the control")
    for column in ("variant", "key", "control", "variant value"):
        table.add_column(column, overflow="fold")
    for name, diff in plan.diffs().items():
        if not diff:
            table.add_row(escape(name), "(the full configuration)" if name == "control" else "(no change)", "", "")
            continue
        for i, (key, (a, b)) in enumerate(diff.items()):
            table.add_row(escape(name) if i == 0 else "", key, escape(describe_value(a)), escape(describe_value(b)))
        table.add_section()
    return table


def ablation_runs_table(plan: Any, rows: list[dict[str, Any]]) -> Table:
    done = sum(1 for r in rows if r["state"] == TaskState.FINISHED)
    steps = sum(r["env_steps"] for r in rows)
    total = sum(r["target_steps"] for r in rows) or 1
    table = Table(title=f"Ablation {plan.group}: {done}/{len(rows)} runs finished, {steps:,}/{total:,} env steps "
                        f"({steps / total:.0%})")
    for column in ("variant", "seed", "run", "env steps", "last eval", "status"):
        table.add_column(column, justify="right" if column in ("seed", "env steps", "last eval") else "left")
    for r in rows:
        last = r["last_eval_return"]
        table.add_row(escape(r["variant"]), str(r["seed"]), r["id"] or "-", f"{r['env_steps']:,}/{r['target_steps']:,}",
                      "-" if last is None else f"{last:,.1f}", str(r["status"]))
    return table


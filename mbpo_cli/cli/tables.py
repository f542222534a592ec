"""Rich tables of compare reports and ablation plans (rendering only; the numbers come from the reports)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table


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


def compare_tables(report: Any) -> list[Table]:  # noqa: C901 - one table after the other
    """The Rich tables of a compare report (see mbpo_cli.report for the definitions)."""

    tables = []

    def add_columns(table: Table, columns: list[str]) -> None:
        for column in columns:
            if column in ("group", "baseline"):  # a long name wraps, never loses its end
                table.add_column(column, overflow="fold")
            else:
                table.add_column(column, justify="right")

    returns = Table(title="Eval return at milestones (95% CI: bootstrap of the IQM over seeds)")
    add_columns(returns, ["group", "env step", "seeds", "mean", "IQM", "95% CI"])
    previous = None
    for row in report.returns:
        if previous is not None and row.group != previous:
            returns.add_section()
        if row.n_seeds == 0:
            ci = "no data"
        elif row.n_seeds == 1:
            ci = "n/a (1 seed)"
        else:
            ci = f"[{row.ci_low:,.1f}, {row.ci_high:,.1f}]"
        returns.add_row(escape(row.group) if row.group != previous else "", f"{row.step:,}", str(row.n_seeds),
                        fmt_number(row.mean), fmt_number(row.iqm), ci)
        previous = row.group
    tables.append(returns)

    pairs = {(r.baseline, r.threshold) for r in report.efficiency}
    single = len(pairs) == 1
    baseline, threshold = next(iter(pairs)) if single else (None, None)
    if single and threshold is not None:
        source = "--threshold" if report.threshold_source == "--threshold" else f"final IQM of {baseline}"
        title = escape(f"Sample efficiency: env steps until the IQM curve reaches threshold {threshold:,.1f} "
                       f"({source}) and stays at or above it")
    else:
        title = "Sample efficiency: env steps until the IQM curve reaches its threshold and stays at or above it"
    efficiency = Table(title=title)
    columns = ["group"] + ([] if single else ["baseline", "threshold"])
    columns += ["steps to threshold", "seeds reaching", "x fewer real steps", "norm. AUC (IQM)"]
    add_columns(efficiency, columns)
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
        cells = [escape(row.group)] + ([] if single else [escape(row.baseline or "-"), fmt_number(row.threshold)])
        cells += [steps, reaching, ratio, fmt_number(row.auc, ".3f")]
        efficiency.add_row(*cells)
    tables.append(efficiency)

    wall = Table(title="Wall-clock time (mean per run)")
    add_columns(wall, ["group", "runs", "wall time", "env steps", "env steps/s", "~wall to threshold"])
    to_threshold = {row.group: row.wall_to_threshold for row in report.efficiency}
    for row in report.wall:
        wall.add_row(escape(row.group), str(row.n_runs), fmt_duration(row.wall_seconds),
                     fmt_number(row.env_steps, ",.0f"), fmt_number(row.steps_per_second, ",.1f"),
                     fmt_duration(to_threshold.get(row.group)))
    tables.append(wall)

    final = Table(title="Final return (IQM at each group's last common eval step) and P(improvement) over the "
                        "baseline")
    add_columns(final, ["group", "final step", "seeds", "IQM", "95% CI", "P(better than baseline)", "at step"])
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
        final.add_row(escape(row.group), f"{row.step:,}", str(row.n_seeds), fmt_number(row.iqm), ci, p,
                      "-" if row.p_step is None else f"{row.p_step:,}")
    tables.append(final)
    return tables



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
    done = sum(1 for r in rows if str(r["status"]).startswith("finished"))
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


"""The Rich tables of `mbpo ablate`: the variants' config differences and the runs' progress (rendering only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from mbpo_cli.sweeps.ablation import TaskState

if TYPE_CHECKING:
    from mbpo_cli.sweeps.variants import Plan


def diff_table(plan: Plan) -> Table:
    """Each variant's config keys that differ from the control's, with both values."""
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


def ablation_runs_table(plan: Plan, rows: list[dict[str, Any]]) -> Table:
    """The ablation's progress: one row per run (`mbpo_cli.sweeps.ablation.run_rows`), finished runs and env steps
    in the title."""
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


"""Rich tables of runs: the `runs list` table (fitted to the terminal), `runs show` and `runs metrics`.

Rendering only. Every value from the registry is escaped: a name or a checkpoint kind in brackets is text, not
Rich markup.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from mbpo_cli.cli.fit import Col, Fit, compact, fitted, fmt_number, split_columns
from mbpo_cli.runs.registry import RunInfo

WIDE = 140
"""Terminal width from which `runs list` shows every column (group, algo, seed and creation time included)."""
MEDIUM = 110
"""Width from which it shows algo and seed; below it, the columns that identify a run and its progress only."""


def short_count(value: int) -> str:
    """5,000 -> '5,000'; 125,000 -> '125k'; 1,250,000 -> '1.25M' (exact up to 9,999, then 3 digits)."""
    if value < 10_000:
        return f"{value:,}"
    scaled, unit = (value / 1e3, "k") if value < 999_500 else (value / 1e6, "M")
    return f"{scaled:.3g}{unit}"


def runs_table(rows: list[dict[str, Any]], title: str, width: int) -> Table:
    """The `runs list` table for a terminal `width` columns wide: below `WIDE` it leaves out columns, below
    `MEDIUM` it abbreviates the step counts; numbers and ids are never cut, a long name or env id is shortened
    in the middle (the run's id tells it apart; `runs show` has it whole)."""
    columns = [Col("id", justify="left"), Col("name", Fit.NAME), Col("status", Fit.WRAP), Col("env", Fit.NAME, keep=20),
               Col("steps"), Col("last eval")]
    if width >= MEDIUM:
        columns[3:3] = [Col("algo", Fit.NAME), Col("seed")]
    if width >= WIDE:
        columns.insert(3, Col("group", Fit.NAME))
        columns.append(Col("created", justify="left"))
    count = (lambda n: f"{n:,}") if width >= MEDIUM else short_count
    cells = []
    for r in rows:
        last = r["last_eval_return"]
        row = {"id": r["id"], "name": r["name"], "status": r["status"], "group": r["group"] or "",
               "algo": r["algo"], "env": r["env_id"], "seed": str(r["seed"]),
               "steps": f"{count(r['env_steps'])}/{count(r['target_steps'])}",
               "last eval": "-" if last is None else f"{last:,.1f}",
               "created": r["created_at"][:16].replace("T", " ")}
        cells.append([row[c.header] for c in columns])
    return fitted(compact(title=escape(title)), columns, cells, width)


def flat_config(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) pairs of a nested config, in its order: {'train': {'steps': 5}} -> ('train.steps', 5)."""
    for key, value in config.items():
        if isinstance(value, dict) and value:
            yield from flat_config(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def run_tables(data: dict[str, Any], info: RunInfo, folder: Path, show_config: bool) -> list[Table]:
    """The `runs show` tables: the run, its evaluation curve, checkpoints, `mbpo eval` evaluations, config."""
    tables = []
    summary = Table(title=f"Run {info.id}", show_header=False, title_justify="left", box=box.SIMPLE)
    summary.add_column("key", style="bold")
    summary.add_column("value", overflow="fold")
    for key in ("name", "status", "group", "variant", "preset", "env_id", "algo", "seed", "device", "host",
                "version", "git_commit", "created_at", "ended_at", "command", "error"):
        if data.get(key) is not None:
            summary.add_row(key, escape(str(data[key])))
    summary.add_row("env steps", f"{info.env_steps:,} / {info.target_steps:,}")
    summary.add_row("wall time", f"{info.wall_seconds:,.1f} s")
    summary.add_row("run folder", escape(str(folder)))
    tables.append(summary)
    if data["evals"]:
        curve = _titled("Evaluation returns during training", box=box.SIMPLE_HEAD)
        curve.add_column("env step", justify="right")
        curve.add_column("return", justify="right")
        for row in data["evals"]:
            curve.add_row(f"{row['step']:,}", f"{row['return']:,.1f}")
        tables.append(curve)
    if data["checkpoints"]:
        ckpts = _titled("Checkpoints", box=box.SIMPLE_HEAD)
        for column in ("kind", "env step", "bytes", "path"):
            ckpts.add_column(column, overflow="fold", justify="right" if column in ("env step", "bytes") else "left")
        for c in data["checkpoints"]:
            ckpts.add_row(escape(c["kind"]), f"{c['step']:,}", f"{c['bytes']:,}", escape(c["path"]))
        tables.append(ckpts)
    if data["evaluations"]:
        evals = _titled("Evaluations recorded by `mbpo eval`", box=box.SIMPLE_HEAD)
        for column in ("#", "checkpoint", "episodes", "seed", "policy", "mean", "std", "recorded"):
            evals.add_column(column, overflow="fold", justify="right" if column in ("#", "episodes", "seed", "mean",
                                                                                   "std") else "left")
        for number, e in enumerate(data["evaluations"], start=1):
            evals.add_row(str(number), escape(e["checkpoint"]), str(e["episodes"]),
                          "-" if e["seed"] is None else str(e["seed"]),
                          "deterministic" if e["deterministic"] else "stochastic", f"{e['mean']:,.1f}",
                          f"{e['std']:,.1f}", str(e["created_at"])[:19].replace("T", " "))
        tables.append(evals)
    if show_config:
        config = _titled("Config (as resolved at start)", show_header=False,
                       box=box.SIMPLE)
        config.add_column("key", style="bold")
        config.add_column("value", overflow="fold")
        for key, value in flat_config(info.config):
            config.add_row(key, escape(repr(value) if isinstance(value, str) and not value else str(value)))
        tables.append(config)
    return tables


def metrics_summary(info: RunInfo, rows: list[tuple[int, str, float]], width: int) -> list[Table]:
    """One line per metric key: how many points, over which steps, the last value and the range; over several
    tables when a terminal `width` columns wide cannot show every column with the keys whole."""
    by_key: dict[str, list[tuple[int, float]]] = {}
    for step, key, value in rows:
        by_key.setdefault(key, []).append((step, value))
    cells = []
    for key, points in sorted(by_key.items()):
        values = [v for _, v in points]
        cells.append([key, str(len(points)), f"{short_count(points[0][0])}-{short_count(points[-1][0])}",
                      _number(values[-1]), _number(min(values)), _number(statistics.median(values)),
                      _number(max(values))])
    columns = [Col("key", Fit.NAME, keep=max(map(len, by_key), default=0)), Col("points"), Col("steps"),
               Col("last"), Col("min"), Col("median"), Col("max")]
    return _split(f"Metrics of run {info.id} ({escape(info.name)})", columns, cells, width,
                  "values at their env step; see one key's values with --keys KEY")


def metrics_table(info: RunInfo, rows: list[tuple[int, str, float]], keys: list[str], last: int,
                  width: int) -> list[Table]:
    """The chosen keys' values at each of the last `last` steps where any of them was logged; over several
    tables (each with the env step) when the keys do not fit side by side in a terminal `width` columns wide."""
    by_step: dict[int, dict[str, float]] = {}
    for step, key, value in rows:
        by_step.setdefault(step, {})[key] = value
    steps = sorted(by_step)
    shown = steps[-last:]
    cells = [[f"{step:,}", *(_number(by_step[step].get(key)) for key in keys)] for step in shown]
    more = " (--last N for more)" if len(shown) < len(steps) else ""
    return _split(f"Metrics of run {info.id} ({escape(info.name)})", [Col("env step"), *map(Col, keys)], cells,
                  width, f"last {len(shown)} of {len(steps)} logged steps{more}")


def _split(title: str, columns: list[Col], cells: list[list[str]], width: int, caption: str) -> list[Table]:
    """`columns` over as many tables as fit `width`, each with the first column; the title above the first
    table (as wide as it, up to `width`), the caption below the last."""
    groups = split_columns(compact(), columns, cells, width)
    tables = []
    for n, group in enumerate(groups):
        table = compact(title=title if n == 0 else None, title_justify="left",
                        min_width=min(len(title), width) if n == 0 else None,
                        caption=caption if n == len(groups) - 1 else None)
        tables.append(fitted(table, [columns[i] for i in group], [[row[i] for i in group] for row in cells], width))
    return tables


def _titled(title: str, **options: Any) -> Table:
    """A left-aligned table at least as wide as its title (a narrow table would wrap its title)."""
    return Table(title=title, title_justify="left", min_width=len(title), **options)


def _number(value: float | None) -> str:
    """A metric value with 4 significant digits (losses are small, returns large)."""
    if value is None:
        return "-"
    return fmt_number(value, ",.1f") if abs(value) >= 1000 else format(value, ".4g")

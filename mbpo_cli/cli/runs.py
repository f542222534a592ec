"""`mbpo runs list | show | delete`."""

from __future__ import annotations

import csv
import difflib
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mbpo_cli.cli import common
from mbpo_cli.cli.commands import Command, Group
from mbpo_cli.cli.common import JsonOpt, emit_json, existing_registry, handled, registry_of
from mbpo_cli.cli.diagnose import diagnostics_table
from mbpo_cli.cli.runs_tables import metrics_summary, metrics_table, run_tables, runs_table
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.reports.diagnostics import load_diagnostics
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import run_dir
from mbpo_cli.runs.process import is_locked, live_status
from mbpo_cli.runs.registry import RUN_STATUSES, Registry, RunInfo, ShownStatus

runs_app = typer.Typer(
    cls=Group,
    help="List, show, inspect the training metrics of, and delete runs in the registry.\n\n"
    "Examples: `mbpo runs list --status finished`, `mbpo runs show 3f9a1c2e --json`, "
    "`mbpo runs metrics 3f9a1c2e --keys model_holdout_loss,alpha`",
    no_args_is_help=True,
)


def _last_eval(registry: Registry, run: RunInfo) -> float | None:
    rows = registry.metrics(run.id, metric_keys.EVAL_RETURN)
    return rows[-1][2] if rows else None


def _run_dict(registry: Registry, run: RunInfo, status: ShownStatus) -> dict[str, Any]:
    data = run.to_dict()
    data["status"] = str(status)
    data["last_eval_return"] = _last_eval(registry, run)
    return data


def _listed(registry: Registry, runs_dir: Path, preset: str | None, status: str | None) -> list[dict[str, Any]]:
    """The rows of `runs list`: the runs of `preset` whose status is `status` (a stale run's is interrupted)."""
    rows = []
    for run in registry.list_runs(preset=preset):
        shown = live_status(run, run_dir(runs_dir, run.id))
        if status is None or shown.status == status:
            rows.append(_run_dict(registry, run, shown))
    return rows


@runs_app.command("list", cls=Command)
def runs_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="running, finished, interrupted or failed.")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Only runs of this preset.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first. A crashed run (stale heartbeat) shows as "interrupted (stale)".

    Example: mbpo runs list --status finished --preset hopper
    """
    with handled(ctx):
        if status is not None and status not in RUN_STATUSES:
            raise RunError(f"--status: expected running, finished, interrupted or failed, got {status!r}")
        registry = existing_registry(ctx, read_only=True)
        rows = [] if registry is None else _listed(registry, ctx.obj.runs_dir, preset, status)
        if as_json:
            emit_json(rows)
            return
        common.out.print(runs_table(rows, f"Runs in {ctx.obj.runs_dir}", common.out.width))


@runs_app.command("show", cls=Command)
def runs_show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    brief: Annotated[bool, typer.Option("--brief", help="Leave out the config.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show one run: its config, evaluation curve, checkpoints and the evaluations recorded by `mbpo eval`.

    Example: mbpo runs show 3f9a1c2e --json
    """
    with handled(ctx):
        registry = registry_of(ctx, run, read_only=True)
        info = registry.get_run(run)
        data = _run_dict(registry, info, live_status(info, run_dir(ctx.obj.runs_dir, info.id)))
        data["evals"] = [{"step": s, "return": v} for s, _, v in registry.metrics(info.id, metric_keys.EVAL_RETURN)]
        data["checkpoints"] = [c.to_dict() for c in registry.checkpoints(info.id)]
        data["evaluations"] = [e.to_dict() for e in registry.evaluations(info.id)]
        diag = load_diagnostics(registry, info)
        recorded = diag.to_dict()
        data["diagnostics"] = {"epochs": recorded["epochs"], "rollouts": recorded["rollouts"]}
        if as_json:
            emit_json(data)
            return
        tables = run_tables(data, info, run_dir(ctx.obj.runs_dir, info.id), show_config=not brief)
        if diag.epochs:
            tables.insert(-1 if not brief else len(tables), diagnostics_table(diag, most=10))
        for table in tables:
            common.out.print(table)


@runs_app.command("delete", cls=Command)
def runs_delete(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a run's registry rows and its run folder.

    Example: mbpo runs delete 3f9a1c2e --yes
    """
    with handled(ctx):
        registry = registry_of(ctx, run)
        info = registry.get_run(run)
        folder = run_dir(ctx.obj.runs_dir, info.id)
        if is_locked(folder):
            raise RunError(f"run {info.id} is running in another process; stop it first")
        if not yes:
            if not sys.stdin.isatty():
                raise RunError("refusing to delete without confirmation: pass --yes")
            typer.confirm(f"Delete run {info.id} ({info.name}) and {folder}?", abort=True)
        registry.delete_run(info.id)
        if folder.is_dir():
            shutil.rmtree(folder)
        common.out.print(f"deleted run {info.id}")



@runs_app.command("metrics", cls=Command)
def runs_metrics(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    keys: Annotated[str | None, typer.Option("--keys", help="Comma-separated metric keys: their values at each "
                                             "logged step (without it: a summary of every key).")] = None,
    last: Annotated[int, typer.Option("--last", min=1, help="With --keys, show only the last N steps.")] = 20,
    as_csv: Annotated[bool, typer.Option("--csv", help="All rows (of --keys, else of every key) as CSV: "
                                         "step,key,value.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The training metrics a run logged (losses, alpha, entropy, model loss, rollout length, ...), to see why a
    run went wrong.

    Examples: `mbpo runs metrics 3f9a1c2e`, `mbpo runs metrics 3f9a1c2e --keys model_holdout_loss,alpha --last 50`,
    `mbpo runs metrics 3f9a1c2e --csv > metrics.csv`
    """
    with handled(ctx):
        registry = registry_of(ctx, run, read_only=True)
        info = registry.get_run(run)
        known = registry.metric_keys(info.id)
        chosen = _chosen_keys(keys, known)
        rows = [row for row in registry.metrics(info.id) if chosen is None or row[1] in chosen]
        if as_csv:
            writer = csv.writer(common.ResultOutput(), lineterminator="\n")  # stdout, even with --json
            writer.writerow(["step", "key", "value"])
            writer.writerows(rows)
        elif as_json:
            emit_json([{"step": step, "key": key, "value": value} for step, key, value in rows])
        else:
            tables = metrics_summary(info, rows, common.out.width) if chosen is None else \
                metrics_table(info, rows, chosen, last, common.out.width)
            for n, table in enumerate(tables):
                common.out.print(*([""] if n else []), table)


def _chosen_keys(keys: str | None, known: list[str]) -> list[str] | None:
    """The --keys list, each one known to the run (else a one-line error listing the keys it has)."""
    if keys is None:
        return None
    chosen = [key.strip() for key in keys.split(",") if key.strip()]
    unknown = [key for key in chosen if key not in known]
    if not chosen or unknown:
        raise RunError(f"--keys: {', '.join(unknown) or 'no key given'}: {_known_keys(unknown, known)}")
    return chosen


def _known_keys(unknown: list[str], known: list[str]) -> str:
    """What the run has instead of `unknown` keys, in a bounded line: every key when there are a few, else the
    closest ones and where to see them all."""
    if len(known) <= 10:
        return f"the run has {', '.join(known) or 'no metrics yet'}"
    close = dict.fromkeys(match for key in unknown for match in difflib.get_close_matches(key, known, n=3))
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{hint}the run has {len(known)} keys (every one: mbpo runs metrics RUN)"

"""`mbpo runs list | show | delete`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mbpo_cli.cli import common
from mbpo_cli.cli.common import JsonOpt, emit_json, existing_registry, handled, registry_of
from mbpo_cli.runs.registry import Registry, RunInfo
from mbpo_cli.runs.session import RunError, is_locked, live_status, run_dir

runs_app = typer.Typer(
    help="List, show and delete runs in the registry.\n\n"
    "Examples: `mbpo runs list --status finished`, `mbpo runs show 3f9a1c2e --json`",
    no_args_is_help=True,
)


def _last_eval(registry: Registry, run: RunInfo) -> float | None:
    rows = registry.metrics(run.id, "eval_return")
    return rows[-1][2] if rows else None


def _run_dict(registry: Registry, run: RunInfo, runs_dir: Path) -> dict[str, Any]:
    data = run.to_dict()
    data["status"] = live_status(run, run_dir(runs_dir, run.id))
    data["last_eval_return"] = _last_eval(registry, run)
    return data


@runs_app.command("list")
@runs_app.command("list")
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
        if status is not None and status not in ("running", "finished", "interrupted", "failed"):
            raise RunError(f"--status: expected running, finished, interrupted or failed, got {status!r}")
        registry = existing_registry(ctx, read_only=True)
        runs = [] if registry is None else registry.list_runs(preset=preset)
        rows = [_run_dict(registry, r, ctx.obj.runs_dir) for r in runs] if registry is not None else []
        if status is not None:
            rows = [r for r in rows if r["status"].split(" ")[0] == status]
        if as_json:
            emit_json(rows)
            return
        table = Table(title=f"Runs in {ctx.obj.runs_dir}")
        for column in ("id", "name", "status", "group", "algo", "env", "seed", "steps", "last eval", "created"):
            # the id stays whole on narrow terminals (it is what other commands take); the other columns give way
            table.add_column(column, no_wrap=column == "id", min_width=8 if column == "id" else None)
        for r in rows:
            last = r["last_eval_return"]
            table.add_row(r["id"], r["name"], r["status"], r["group"] or "", r["algo"], r["env_id"], str(r["seed"]),
                          f"{r['env_steps']:,}/{r['target_steps']:,}", "-" if last is None else f"{last:,.1f}",
                          r["created_at"][:19].replace("T", " "))
        common.out.print(table)


@runs_app.command("show")
@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one run: its config, evaluation curve and checkpoints.

    Example: mbpo runs show 3f9a1c2e --json
    """
    with handled(ctx):
        registry = registry_of(ctx, run, read_only=True)
        info = registry.get_run(run)
        data = _run_dict(registry, info, ctx.obj.runs_dir)
        data["evals"] = [{"step": s, "return": v} for s, _, v in registry.metrics(info.id, "eval_return")]
        data["checkpoints"] = [c.to_dict() for c in registry.checkpoints(info.id)]
        data["evaluations"] = [e.to_dict() for e in registry.evaluations(info.id)]
        if as_json:
            emit_json(data)
            return
        table = Table(title=f"Run {info.id}", show_header=False, title_justify="left")
        table.add_column("key", style="bold")
        table.add_column("value")
        for key in ("name", "status", "group", "variant", "preset", "env_id", "algo", "seed", "device", "host",
                    "version", "git_commit", "created_at", "ended_at", "command", "error"):
            if data.get(key) is not None:
                table.add_row(key, str(data[key]))
        table.add_row("env steps", f"{info.env_steps:,} / {info.target_steps:,}")
        table.add_row("wall time", f"{info.wall_seconds:,.1f} s")
        table.add_row("run folder", str(run_dir(ctx.obj.runs_dir, info.id)))
        common.out.print(table)
        if data["evals"]:
            curve = Table(title="Evaluation returns")
            curve.add_column("env step", justify="right")
            curve.add_column("return", justify="right")
            for row in data["evals"]:
                curve.add_row(f"{row['step']:,}", f"{row['return']:,.1f}")
            common.out.print(curve)
        for ckpt in data["checkpoints"]:
            common.out.print(f"checkpoint [{ckpt['kind']}] step {ckpt['step']:,}: {ckpt['path']} "
                             f"({ckpt['bytes']:,} bytes)")


@runs_app.command("delete")
@runs_app.command("delete")
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


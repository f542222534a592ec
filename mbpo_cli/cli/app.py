"""The `mbpo` command line: the Typer app and its commands, one module each.

A thin layer: every command parses its options and calls the engine, the runs, the sweeps or the reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mbpo_cli import __version__
from mbpo_cli.cli import (
    ablate,
    bench,
    compare,
    diagnose,
    evaluate,
    export,
    presets,
    runs,
    runs_export,
    train,
    tune,
)
from mbpo_cli.cli.commands import Command, Group
from mbpo_cli.cli.common import Globals

app = typer.Typer(
    name="mbpo",
    help="Model-Based Policy Optimization (Janner et al. 2019): train, resume, inspect and compare runs.\n\n"
    "Examples: `mbpo train --preset hopper --seed 1`, `mbpo runs list`, `mbpo resume 3f9a1c2e`",
    cls=Group,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        print(f"mbpo {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", envvar="MBPO_RUNS_DIR",
                                           help="Where the registry and run folders live.")] = Path("runs"),
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Model-Based Policy Optimization as one command.

    Every run is recorded in a registry (SQLite at RUNS_DIR/registry.db, or MBPO_REGISTRY_URL).
    """
    ctx.obj = Globals(runs_dir=runs_dir, debug=debug)


app.command(cls=Command)(train.train)
app.command(cls=Command)(train.resume)
app.add_typer(runs.runs_app, name="runs")
runs.runs_app.command("export", cls=Command)(runs_export.runs_export)
app.command("eval", cls=Command)(evaluate.eval_run)
app.command("export", cls=Command)(export.export)
app.command(cls=Command)(compare.compare)
app.command(cls=Command)(diagnose.diagnose)
app.command(cls=Command)(ablate.ablate)
app.command(cls=Command)(tune.tune)
app.command(cls=Command)(bench.bench)
app.command(cls=Command)(presets.presets)

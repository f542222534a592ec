"""`mbpo runs export`: recorded runs as TensorBoard event files or a long-format CSV (the app registers it on
`mbpo runs`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mbpo_cli.cli import common
from mbpo_cli.cli.common import handled, registry_of
from mbpo_cli.runs.registry import Registry, RunInfo
from mbpo_cli.runs.session import RunError
from mbpo_cli.runs.tensorboard import summary_writer

FORMATS = ("tensorboard", "csv")


def runs_export(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(help="Run ids, id prefixes, run names or group names.",
                                              metavar="RUN_OR_GROUP")],
    out: Annotated[Path, typer.Option("--out", help="tensorboard: the folder to write (one subfolder per run, "
                                      "named by run name); csv: the file to write, or - for stdout.")],
    fmt: Annotated[str, typer.Option("--format", help="tensorboard (event files; needs: pip install "
                                     "'mbpo-cli[tensorboard]') or csv (run_id,run_name,step,key,value).")]
    = "tensorboard",
) -> None:
    """Export runs' metrics, every one at its env step, and their `mbpo eval` evaluations.

    TensorBoard: one subfolder of OUT per run, named by its run name (with `-<run id>` added if two names would
    share a folder); exporting a run again replaces its event files there. View with `tensorboard --logdir OUT`.
    CSV: one row per value, long format; the file is overwritten.

    Examples:

        mbpo runs export 3f9a1c2e --out tb/ && tensorboard --logdir tb/

        mbpo runs export hopper-seeds hopper-sac-seeds --format tensorboard --out tb/

        mbpo runs export 3f9a1c2e --format csv --out - | head
    """
    from mbpo_cli.reports import compare as reports
    from mbpo_cli.reports import export

    with handled(ctx):
        if fmt not in FORMATS:
            raise RunError(f"--format: expected tensorboard or csv, got {fmt!r}")
        to_stdout = str(out) == "-"
        if fmt == "tensorboard":
            if to_stdout:
                raise RunError("--out -: TensorBoard event files need a folder, e.g. --out tb/")
            summary_writer("--format tensorboard")  # a missing package is one line, before anything is read
        if fmt == "tensorboard" and out.exists() and not out.is_dir():
            raise RunError(f"--out {out}: not a folder")
        registry = registry_of(ctx, refs[0], read_only=True)
        try:
            runs = reports.resolve_refs(registry, refs)
        except reports.ReportError as error:
            raise RunError(str(error)) from None
        if fmt == "csv":
            _export_csv(registry, runs, out, to_stdout)
            return
        try:
            written = export.write_tensorboard(registry, runs, out)
        except OSError as error:
            raise RunError(f"cannot write {error.filename or out}: {error.strerror or error}") from None
        for run in runs:
            folder, count = written[run.id]
            common.out.print(f"{run.id} ({escape(run.name)}): {count:,} scalars -> {escape(str(folder))}",
                             highlight=False, soft_wrap=True)
        common.out.print(f"View with: [bold]tensorboard --logdir {escape(str(out))}[/]", highlight=False,
                         soft_wrap=True)


def _export_csv(registry: Registry, runs: list[RunInfo], out: Path, to_stdout: bool) -> None:
    """The CSV on stdout, or in the file `out` (with a line saying so)."""
    from mbpo_cli.reports import export

    if to_stdout:
        export.write_csv(registry, runs, sys.stdout)
        sys.stdout.flush()
        return
    try:
        with open(out, "w", newline="") as stream:
            count = export.write_csv(registry, runs, stream)
    except OSError as error:
        raise RunError(f"cannot write {out}: {error.strerror or error}") from None
    common.out.print(f"{count:,} rows of {len(runs)} run{'s' if len(runs) != 1 else ''} -> {escape(str(out))}",
                     highlight=False, soft_wrap=True)

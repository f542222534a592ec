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
from mbpo_cli.runs import outputs
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.outputs import OutputFile
from mbpo_cli.runs.registry import Registry, RunInfo
from mbpo_cli.runs.tensorboard import summary_writer

FORMATS = ("tensorboard", "csv")


def runs_export(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(help="Run ids, id prefixes, run names or group names.",
                                              metavar="RUN_OR_GROUP")],
    out: Annotated[Path, typer.Option("--out", help="tensorboard: the folder to write (one subfolder per run, "
                                      "named by run name); csv: the file to write, or - for stdout. Not the "
                                      "registry, the runs directory itself or anything in a run's folder.")],
    fmt: Annotated[str, typer.Option("--format", help="tensorboard (event files; needs: pip install "
                                     "'mbpo-cli[tensorboard]') or csv (run_id,run_name,step,key,value).")]
    = "tensorboard",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="csv: replace the file if it exists; tensorboard: "
                                            "replace the event files of runs already exported to OUT.")] = False,
) -> None:
    """Export runs' metrics, every one at its env step, and their `mbpo eval` evaluations.

    TensorBoard: one subfolder of OUT per run, named by its run name (with `-<run id>` added if two names would
    share a folder); exporting a run again replaces its event files there, with --overwrite. View with
    `tensorboard --logdir OUT`. CSV: one row per value, long format; an existing file is replaced only with
    --overwrite. Either is written under a temporary name and renamed into place once complete. OUT may be a new
    folder inside the runs directory (e.g. runs/tb), never the registry, the runs directory itself or a run's folder.

    Examples:

        mbpo runs export 3f9a1c2e --out tb/ --overwrite && tensorboard --logdir tb/

        mbpo runs export hopper-seeds hopper-sac-seeds --format tensorboard --out tb/

        mbpo runs export 3f9a1c2e --format csv --out - | head
    """
    from mbpo_cli.reports import metrics_export

    with handled(ctx):
        if fmt not in FORMATS:
            raise RunError(f"--format: expected tensorboard or csv, got {fmt!r}")
        to_stdout = str(out) == "-"
        if fmt == "csv":
            file = None if to_stdout else outputs.check_file("--out", out, ctx.obj.runs_dir, overwrite)
            registry, runs = _runs(ctx, refs)
            _export_csv(registry, runs, file)
            return
        if to_stdout:
            raise RunError("--out -: TensorBoard event files need a folder, e.g. --out tb/")
        summary_writer("--format tensorboard")  # a missing package is one line, before anything is read
        outputs.check_folder("--out", out, ctx.obj.runs_dir)
        registry, runs = _runs(ctx, refs)
        folders = metrics_export.tensorboard_folders(runs, out, ctx.obj.runs_dir, overwrite)
        _export_tensorboard(registry, runs, out, folders)


def _runs(ctx: typer.Context, refs: list[str]) -> tuple[Registry, list[RunInfo]]:
    """The registry and the runs `refs` name (ids, id prefixes, run or group names)."""
    from mbpo_cli.reports.refs import ReportError, resolve_refs

    registry = registry_of(ctx, refs[0], read_only=True)
    try:
        return registry, resolve_refs(registry, refs)
    except ReportError as error:
        raise RunError(str(error)) from None


def _export_tensorboard(registry: Registry, runs: list[RunInfo], out: Path, folders: dict[str, Path]) -> None:
    """Each run's event file in its folder of `folders` (under `out`), and a line per run saying so."""
    from mbpo_cli.reports import metrics_export

    try:
        written = metrics_export.write_tensorboard(registry, runs, folders)
    except OSError as error:
        raise RunError(f"cannot write {error.filename or out}: {error.strerror or error}") from None
    names = metrics_export.folder_names(runs)
    for run in runs:
        common.out.print(f"{run.id} ({escape(run.name)}): {written[run.id]:,} scalars -> "
                         f"{escape(str(out / names[run.id]))}", highlight=False, soft_wrap=True)
    common.out.print(f"View with: [bold]tensorboard --logdir {escape(str(out))}[/]", highlight=False, soft_wrap=True)


def _export_csv(registry: Registry, runs: list[RunInfo], file: OutputFile | None) -> None:
    """The CSV on stdout (`file` None), or in `file` (with a line saying so)."""
    from mbpo_cli.reports import metrics_export

    if file is None:
        metrics_export.write_csv(registry, runs, sys.stdout)
        sys.stdout.flush()
        return
    try:
        with file.writing() as partial, open(partial, "w", newline="") as stream:
            count = metrics_export.write_csv(registry, runs, stream)
    except OSError as error:
        raise RunError(f"cannot write {file.named}: {error.strerror or error}") from None
    common.out.print(f"{count:,} rows of {len(runs)} run{'s' if len(runs) != 1 else ''} -> "
                     f"{escape(str(file.named))}", highlight=False, soft_wrap=True)

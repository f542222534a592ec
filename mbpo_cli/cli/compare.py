"""`mbpo compare`: groups of seeds against a baseline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mbpo_cli.cli import common
from mbpo_cli.cli.common import OverwriteOpt, emit_json, handled, registry_of
from mbpo_cli.cli.compare_tables import compare_tables, short_group_names
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.reports.axis import Axis, time_unit
from mbpo_cli.runs.errors import RunError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mbpo_cli.reports.compare import Report
    from mbpo_cli.reports.plots import Groups
    from mbpo_cli.reports.stats import Curve
    from mbpo_cli.runs.outputs import OutputFile


def _in_unit(data: Groups, per: float) -> Groups:
    """``data`` with its grids (seconds) divided by ``per`` seconds."""
    return {name: (grid / per, values) for name, (grid, values) in data.items()}


def _draw(report: Report, curves_data: Groups, model_curves: dict[str, Curve] | None, plot: OutputFile) -> None:
    """Write the learning-curve figure (with the groups' model returns dashed when `model_curves` is given); on the
    wall axis its x in seconds, minutes or hours, whichever suits the longest run."""
    from mbpo_cli.reports import compare as reports
    from mbpo_cli.reports import plots

    lines = {r.threshold for r in report.efficiency}
    line = next(iter(lines)) if len(lines) == 1 else None
    envs = ", ".join(dict.fromkeys(g.env_id for g in report.groups))
    overlay: Groups | None = reports.model_return_data(report, model_curves) if model_curves is not None else None
    if model_curves is not None and not overlay:
        common.err.print("warning: --model-return: no compared group recorded model returns (model-free runs, or "
                         "diagnostics off)", highlight=False, markup=False, soft_wrap=True)
    x_label = plots.STEPS_LABEL
    if report.x is Axis.WALL:
        per, unit = time_unit(max(float(grid[-1]) for grid, _ in curves_data.values()))
        curves_data, overlay = _in_unit(curves_data, per), None if overlay is None else _in_unit(overlay, per)
        x_label = f"training wall-clock time ({unit}; time between sessions not counted)"
    with plot.writing() as partial:
        plots.plot_curves(curves_data, partial, line, f"{envs}: IQM eval return over seeds (95% bootstrap CI)",
                          model_returns=overlay, x_label=x_label, reference=report.reference)


def _axis(text: str) -> Axis:
    """The `--x` value as an axis."""
    if text not in {a.value for a in Axis}:
        raise RunError(f"--x: expected steps or wall, got {text[:40]!r}")
    return Axis(text)


def compare(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(help="Run ids, id prefixes, run names or group names.",
                                              metavar="RUN_OR_GROUP")],
    baseline: Annotated[str | None, typer.Option("--baseline", help="The baseline run or group (default: the "
                                                 "model-free group of the same env among the arguments).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Env steps for the returns table: 25000,50k,...; with --x "
                                           "wall, seconds of training: 90,30m,2h.")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Return to reach and hold (default: the "
                                                    "baseline's final IQM return).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write learning curves to FILE.png or FILE.svg (its "
                                              "folder must exist).")] = None,
    model_return: Annotated[bool, typer.Option("--model-return", help="With --plot: also draw each group's return "
                                               "inside its model (dashed; see `mbpo diagnose`).")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv (run_id,group,seed,step,return; with --x "
                                     "wall, a wall_seconds column before return).")] = "table",
    x_axis: Annotated[str, typer.Option("--x", help="The x axis of curves, milestones and thresholds: steps (env "
                                        "steps) or wall (seconds of training wall time; the time between a run's "
                                        "sessions not counted).")] = "steps",
    reference: Annotated[str | None, typer.Option("--reference", metavar="NAME_OR_FILE", help="A published curve "
                                                  "to check a reproduction against: a bundled name (listed above) or "
                                                  "a CSV file of step,mean,low,high ('#' comments; '# label: TEXT' "
                                                  "names it). The returns table gains its mean [low, high] at each "
                                                  "milestone (interpolated between its steps, never extrapolated) "
                                                  "and how many seeds lie in that range; --plot draws it. Env-step "
                                                  "axis only.")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Compare groups of seeds: returns at milestones, sample efficiency vs a baseline, wall clock, final return.

    Runs with the same config apart from the seed (and device, threads) form one group. Statistics are over
    seeds: IQM with 95% bootstrap intervals (fixed bootstrap seed: the same input gives the same output).

    Examples:

        mbpo compare hopper-seeds hopper-sac-seeds

        mbpo compare 3f9a1c2e 8b7d6e5f --baseline 1a2b3c4d --at 25k,50k,100k --plot curves.png

        mbpo compare hopper-seeds --threshold 3000 --format json

        mbpo compare hopper-seeds hopper-sac-seeds --x wall --at 10m,1h --plot time.png

        mbpo compare hopper-seeds --reference mbpo-hopper --at 10k,20k,30k --plot repro.png

    Bundled --reference curves, NAME = ALGO-TASK: ALGO one of mbpo, dhmbpo, sac, macura; TASK one of hopper,
    halfcheetah, walker2d, ant, humanoid (e.g. mbpo-hopper, dhmbpo-halfcheetah, sac-walker2d). Each is the mean,
    min and max over the rows at every 5,000th env step of the public result CSVs of 4kubo/erl_lib
    (results/main/gym/): see the comments at the top of each file in mbpo_cli/reports/references/.
    """
    from mbpo_cli.reports import compare as reports
    from mbpo_cli.reports.reference import load_reference
    from mbpo_cli.reports.refs import resolve_refs
    from mbpo_cli.runs import outputs

    with handled(ctx):
        if fmt not in ("table", "json", "csv"):
            raise RunError(f"--format: expected table, json or csv, got {fmt!r}")
        axis = _axis(x_axis)
        if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
            raise RunError(f"--plot: the file must end in .png or .svg, got {str(plot)!r}")
        if model_return and plot is None:
            raise RunError("--model-return draws on the figure: add --plot FILE.png")
        if reference is not None and axis is Axis.WALL:
            raise RunError("--reference: published curves are over env steps; it cannot be used with --x wall")
        figure = None if plot is None else outputs.check_file("--plot", plot, ctx.obj.runs_dir, overwrite)
        try:
            curve = None if reference is None else load_reference(reference)
            parse = reports.parse_steps if axis is Axis.STEPS else reports.parse_seconds
            at_points = parse(at) if at is not None else None
            registry = registry_of(ctx, refs[0], read_only=True)
            runs = resolve_refs(registry, refs)
            base_runs = resolve_refs(registry, [baseline]) if baseline is not None else None
            everyone = [*runs, *(base_runs or [])]
            curves = reports.load_curves(registry, everyone, x=axis)
            report = reports.build_report(runs, curves, baseline_runs=base_runs, at=at_points, threshold=threshold,
                                          x=axis, reference=curve)
            model_curves = (reports.load_curves(registry, everyone, metric_keys.DIAG_MODEL_RETURN, axis)
                            if model_return else {})
            step_curves = reports.load_curves(registry, everyone) if axis is Axis.WALL and fmt == "csv" else curves
        except reports.ReportError as error:
            raise RunError(str(error)) from None
        for warning in report.warnings:  # on stderr whatever the format: the JSON and CSV stay parseable
            common.err.print(f"warning: {warning}", highlight=False, markup=False, soft_wrap=True)
        curves_data = reports.plot_data(report, curves)
        if figure is not None:
            _draw(report, curves_data, model_curves if model_return else None, figure)
        if fmt == "csv" and axis is Axis.WALL:
            _print_csv(reports.WALL_CSV_HEADER, reports.wall_long_rows(report, step_curves, curves))
        elif fmt == "csv":
            _print_csv(("run_id", "group", "seed", "step", "return"), reports.long_rows(report, curves))
        elif fmt == "json":
            data = reports.report_to_dict(report)
            data["plot"] = None if plot is None else str(plot)
            emit_json(data)
        else:
            _print_tables(report, curves_data, plot)


def _print_csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """The long-format CSV (run_id,group,seed,step,return, or with wall_seconds before return) on stdout."""
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def _print_tables(report: Report, curves_data: Groups, plot: Path | None) -> None:
    """The tables, what their numbers mean, the notes, and the terminal plot (up to 10 groups)."""
    from mbpo_cli.reports import compare as reports
    from mbpo_cli.reports import plots

    for table in compare_tables(report, common.out.width):
        common.out.print(table)
    for env, auc in report.auc.items():
        if auc.start == auc.start:
            of = "" if len(report.auc) == 1 else f" of {env}"
            common.out.print(f"norm. AUC{of}: each run's mean return over {report.x.span(auc.start, auc.end)}, "
                             f"scaled so that 0 = {auc.low:,.1f} and 1 = {auc.high:,.1f} (the "
                             f"lowest and highest eval return of any compared run{of})",
                             highlight=False, markup=False)
    common.out.print(f"steps: {reports.STEP_AXIS}", highlight=False)
    if report.x is Axis.WALL:
        common.out.print(f"time: {reports.WALL_AXIS}", highlight=False, markup=False)
    common.out.print(reports.threshold_rule(report.x), highlight=False, markup=False)
    common.out.print(f"values: {reports.values_rule(report.x)}", highlight=False, markup=False)
    if report.reference is not None:
        common.out.print(f"published: {report.reference.label} ({report.reference.source}): "
                         f"{reports.REFERENCE_RULE}", highlight=False, markup=False)
    for note in report.notes:
        common.out.print(f"note: {note}", highlight=False, markup=False)
    if plot is not None:
        common.out.print(f"wrote {plot}")
    if len(curves_data) <= 10:
        if report.x is Axis.WALL:
            common.out.print("the plot's x: seconds of training wall time", highlight=False, markup=False)
        names, _ = short_group_names(list(curves_data))
        common.out.print(plots.text_plot({names.get(g, g): curve for g, curve in curves_data.items()}),
                         highlight=False, markup=False)

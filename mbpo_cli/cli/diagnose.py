"""`mbpo diagnose`: a run's model diagnostics (error against rollout step, model vs real return) as tables and a
figure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from mbpo_cli.cli import common
from mbpo_cli.cli.common import JsonOpt, OverwriteOpt, emit_json, handled, registry_of
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.runs.errors import RunError

if TYPE_CHECKING:
    from mbpo_cli.reports.diagnostics import Diagnostics

RETURN_KEYS = (metric_keys.EVAL_RETURN, metric_keys.DIAG_MODEL_RETURN)
"""The epoch table's return columns (real, model)."""
ERROR_KEYS = (metric_keys.DIAG_MODEL_ERROR, metric_keys.DIAG_DISAGREEMENT)
"""The epoch table's one-step columns (error, disagreement)."""
ROLLOUT_COLUMNS = (metric_keys.ROLLOUT_LENGTH_MEAN, metric_keys.ROLLOUT_LENGTH_P10, metric_keys.ROLLOUT_LENGTH_P90,
                   metric_keys.ROLLOUT_THRESHOLD)
"""The adaptive-rollout table's value columns."""

DIAGNOSTICS_CAPTION = ("real / model: the deterministic policy's return in the task (evaluation) and inside the model "
                       "(from the evaluation's initial states); errors are normalized MSE of the next observation "
                       "(1.0 = as wrong as predicting each dimension's mean): 1-step on the real transitions since the "
                       "last retrain (unseen by the model), h=N open-loop after N steps of real actions replayed from "
                       "real states; disagree: the members' mean disagreement on those unseen transitions")


def diagnostics_table(diag: Diagnostics, most: int | None = None) -> Table:
    """One row per epoch (at most `most`, evenly spread): real and model return, one-step error, disagreement and
    the open-loop error at h = 1, H/2 and H."""
    from mbpo_cli.reports.diagnostics import shown_steps

    steps = sorted(diag.epochs)
    shown = steps if most is None else shown_steps(steps, most)
    horizon = diag.horizon
    marks = sorted({1, max(1, horizon // 2), horizon}) if horizon else []
    title = "Model diagnostics" + ("" if len(shown) == len(steps) else f" ({len(shown)} of {len(steps)} epochs; "
                                                                       "mbpo diagnose RUN shows all)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, caption=DIAGNOSTICS_CAPTION,
                  caption_justify="left", min_width=len(title), pad_edge=False)
    for column in ("env step", "real", "model", "1-step", "disagree", *(f"h={h}" for h in marks)):
        table.add_column(column, justify="right", no_wrap=True)
    for step in shown:
        values = diag.epochs[step]
        errors = diag.open_loop.get(step, [])
        table.add_row(f"{step:,}", *(_return(values.get(k)) for k in RETURN_KEYS),
                      *(_value(values.get(k)) for k in ERROR_KEYS),
                      *(_value(errors[h - 1] if h <= len(errors) else None) for h in marks))
    return table


def rollouts_table(diag: Diagnostics) -> Table:
    """The adaptive rollouts' realized branch lengths and thresholds, one row per retrain."""
    table = Table(title="Adaptive rollouts (one row per retrain)", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("env step", "length mean", "p10", "p90", "threshold", "stopped by threshold"):
        table.add_column(column, justify="right")
    for step, values in sorted(diag.rollouts.items()):
        stopped = values.get(metric_keys.ROLLOUT_STOPPED_UNCERTAIN)
        table.add_row(f"{step:,}", *(_value(values.get(k)) for k in ROLLOUT_COLUMNS),
                      "-" if stopped is None else f"{stopped:.0%}")
    return table


def _return(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.1f}"


def _value(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 100 else format(value, ".3g" if abs(value) >= 1 else ".2g")


def diagnose(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the figure to FILE.png or FILE.svg: open-loop "
                                              "error against rollout step, model vs real return, one-step error "
                                              "(its folder must exist).")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a run's model diagnostics: how wrong the model is on data it has not seen, how that error compounds
    over a rollout, and whether the policy's return inside the model runs away from its real return.

    MBPO runs record them at each epoch end (`diagnostics.enabled`, on by default).

    Examples:

        mbpo diagnose 3f9a1c2e --plot diagnostics.png

        mbpo diagnose 3f9a1c2e --json
    """
    from mbpo_cli.reports.diagnostics import load_diagnostics, plot_diagnostics
    from mbpo_cli.runs import outputs

    with handled(ctx):
        if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
            raise RunError(f"--plot: the file must end in .png or .svg, got {str(plot)!r}")
        figure = None if plot is None else outputs.check_file("--plot", plot, ctx.obj.runs_dir, overwrite)
        registry = registry_of(ctx, run, read_only=True)
        info = registry.get_run(run)
        diag = load_diagnostics(registry, info)
        if not diag.epochs:
            why = ("it trains no model" if info.algo != "mbpo" else
                   "none was recorded (diagnostics.enabled false, or no epoch ended after exploration yet)")
            if info.algo == "dhmbpo":
                why = "the diagnostics are MBPO's (a DHMBPO run records its model's validation NLL as metrics)"
            raise RunError(f"run {info.id} has no model diagnostics: {why}")
        if figure is not None:
            with figure.writing() as partial:
                plot_diagnostics(diag, partial)
        if as_json:
            data = diag.to_dict()
            data["plot"] = None if plot is None else str(plot)
            emit_json(data)
            return
        common.out.print(f"Run {info.id} ({escape(info.name)}), {info.env_id}", highlight=False)
        common.out.print(diagnostics_table(diag))
        if diag.rollouts:
            common.out.print(rollouts_table(diag))
        if plot is not None:
            common.out.print(f"wrote {plot}", highlight=False)

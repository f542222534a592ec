"""`mbpo bench`: timings of the engine's components."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mbpo_cli.api.run_config import check_device, device_source
from mbpo_cli.cli import common
from mbpo_cli.cli.common import DeviceOpt, JsonOpt, SetOpt, emit_json, handled
from mbpo_cli.cli.display import Output
from mbpo_cli.cli.fit import Col, Fit, fitted
from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.resolve import resolve

if TYPE_CHECKING:
    from mbpo_cli.bench.timing import Floor, Timing


@contextmanager
def bench_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress line on stderr (what is being timed, how far, time elapsed), cleared when done."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Output(stderr=True), transient=True)
    task = bar.add_task("starting", total=None)

    def update(what: str, done: int, total: int) -> None:
        bar.update(task, description=what, completed=done, total=total)

    with bar:
        yield update


def components_table(title: str, timings: list[Timing], width: int) -> Table:
    """The components' timings (milliseconds) and shares of an env step, for a terminal `width` columns wide:
    the numbers whole, a component's name shortened in the middle if need be."""
    per_step = {t.name: t.median * t.per_env_step for t in timings}
    total = sum(per_step.values()) or 1.0
    columns = [Col("component", Fit.NAME, keep=22), Col("median ms"), Col("min ms"), Col("max ms"),
               Col("runs/step"), Col("share")]
    rows = [[t.name, _ms(t.median), _ms(t.low), _ms(t.high), f"{t.per_env_step:g}",
             f"{per_step[t.name] / total:.1%}" if t.per_env_step else "-"] for t in timings]
    caption = "runs/step: times a component runs per real env step in a full run; share: of an env step's time"
    return fitted(Table(title=title, caption=caption), columns, rows, width)


def _ms(value: float) -> str:
    """Milliseconds to about 4 significant digits: 0.055, 3.15, 47.8, 17,901."""
    digits = 0 if value >= 100 else 1 if value >= 10 else 2 if value >= 1 else 3
    return f"{value:,.{digits}f}"


def bench(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option("--preset", help="Preset whose shapes are timed.")] = "hopper",
    device: DeviceOpt = None,
    steps: Annotated[int, typer.Option("--steps", help="Real steps of the end-to-end segment (after exploration).")]
    = 500,
    samples: Annotated[int, typer.Option("--samples", help="Real transitions the model retrain is timed on.")]
    = 10_000,
    repeats: Annotated[int, typer.Option("--repeats", help="Repetitions per component (medians reported).")] = 20,
    at: Annotated[int | None, typer.Option(
        "--at", help="Real steps before the end-to-end segment (default: the preset's exploration, so the first "
                     "epoch after it); up to it: random actions and one untimed model retrain and rollout.")] = None,
    set_: SetOpt = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Time a pack of this many seeds (as `train --seeds` "
                                       "trains them): the update and the model's training for all of them at once, "
                                       "the end-to-end segment's steps for every seed.")] = 1,
    floor: Annotated[bool, typer.Option("--floor", help="Measure only this machine's matmul floor (GFLOP/s of one "
                                        "256 x 256 x 256 fp32 torch.bmm) and exit: the number to quote beside "
                                        "any time measured here.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Time the engine's components and an end-to-end segment at a preset's shapes.

    Every report starts with the machine's arithmetic floor: the GFLOP/s one 256 x 256 x 256 fp32 `torch.bmm`
    reaches (the agents' layer width). Times from two machines compare through it (a machine with half the
    floor takes about twice as long); `--floor` measures it alone in seconds.

    Components: one SAC update at the preset's batch, one ensemble training minibatch (256 per member), one
    full model retrain on --samples transitions, one rollout step of the preset's rollout batch, one env
    step and one evaluation episode. Medians of repeated runs, device synchronized around timed regions.
    End to end: --steps of training from --at real steps, with each model retrain's seconds (the cost growth
    with the data: --at 10000, 25000, 50000).

    Examples:

        mbpo bench --preset hopper --steps 200

        mbpo bench --preset hopper --device cuda --steps 10000 --json

        mbpo bench --preset hopper --at 50000 --steps 1000 --repeats 3

        mbpo bench --preset hopper --seeds 4 --steps 200   # a pack of 4 seeds

        mbpo bench --floor
    """
    from mbpo_cli.bench import components, end_to_end
    from mbpo_cli.bench.timing import matmul_floor

    with handled(ctx):
        if steps < 1 or samples < 2 or repeats < 1:
            raise ConfigError("--steps, --samples and --repeats must be positive (--samples at least 2)")
        resolved = resolve(preset=preset, device=device, overrides=set_)
        config = resolved.config
        end_to_end.segment_start(config, at)
        dev = check_device(config.train.device, device_source(resolved.provenance))
        if config.train.threads is not None:
            torch.set_num_threads(config.train.threads)
        machine = matmul_floor(dev)
        if floor:
            show_floor(machine, as_json)
            return
        with bench_progress() as progress:
            timings, update_mode = components.bench_components(config, samples, repeats, progress, seeds)
            segment = end_to_end.bench_end_to_end(config, steps, progress, at, seeds)
        result: dict[str, Any] = {"device": str(dev), "preset": preset, "torch": torch.__version__,
                                  "threads": torch.get_num_threads(), "update_mode": update_mode,
                                  "floor_gflops": round(machine.gflops, 1), "floor_threads": machine.threads}
        for timing in timings:
            result[f"{timing.name}_ms"] = round(timing.median, 4)
        result["seeds"] = seeds
        result["env_steps_per_s"] = round(segment.steps_per_s, 2)
        result["env_steps_per_s_all_seeds"] = round(segment.steps_per_s * seeds, 2)
        result["end_to_end_start"] = segment.start
        result["end_to_end_steps"] = steps
        result["end_to_end_phase_seconds"] = {k: round(v, 3) for k, v in segment.phases.items()}
        result["end_to_end_retrains"] = [{"env_step": r.env_step, "seconds": round(r.seconds, 3), "epochs": r.epochs,
                                          "rollout_length": r.rollout_length}
                                         for r in segment.retrains]
        if as_json:
            emit_json(result)
            return
        common.out.print(floor_line(machine), highlight=False)
        common.out.print(components_table(f"mbpo bench: {preset} on {dev}", timings, common.out.width))
        common.out.print(f"{config.agent.name.upper()} update: {update_mode}", highlight=False)
        split = ", ".join(f"{k} {v:,.1f} s" for k, v in segment.phases.items())
        common.out.print(f"end to end: {segment.steps_per_s:,.2f} env steps/s over {steps:,} steps after "
                         f"{segment.start:,} ({split})", highlight=False)
        if seeds > 1:
            common.out.print(f"a pack of {seeds} seeds: {segment.steps_per_s * seeds:,.2f} env steps/s over all seeds; "
                             f"the update and the model's training above are the pack's (all {seeds} seeds at once), "
                             "the rollout, env and evaluation timings one seed's", highlight=False)
        if segment.retrains:
            fits = ", ".join(f"{r.seconds:,.1f} s ({r.epochs} epochs, k = {r.rollout_length})"
                             for r in segment.retrains)
            common.out.print(f"model retrains: {fits}", highlight=False)


def floor_line(machine: Floor) -> str:
    """The floor as one line: what it measured, where, with how many threads."""
    threads = f", {machine.threads} thread{'' if machine.threads == 1 else 's'}" if machine.device == "cpu" else ""
    return f"matmul floor: {machine.gflops:,.1f} GFLOP/s (256^3 fp32 torch.bmm, {machine.device}{threads})"


def show_floor(machine: Floor, as_json: bool) -> None:
    """`--floor`: the floor alone, as a line or as JSON."""
    if as_json:
        emit_json({"floor_gflops": round(machine.gflops, 1), "threads": machine.threads, "device": machine.device,
                   "torch": torch.__version__})
        return
    common.out.print(floor_line(machine), highlight=False)

"""`mbpo ablate`: the paper's ablations across seeds.

The command composes three layers: the plan and its execution (`mbpo_cli.sweeps.ablation`), the compare
report of the finished group (`mbpo_cli.reports.compare`), and the tables that show them.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live

from mbpo_cli.cli import common
from mbpo_cli.cli.ablate_tables import ablation_runs_table, diff_table
from mbpo_cli.cli.common import (
    ConfigOpt,
    DeviceOpt,
    EnvOpt,
    JsonOpt,
    PresetOpt,
    SetOpt,
    build_train_config,
    emit_json,
    existing_registry,
    handled,
    note_renamed,
    open_registry,
    registry_of,
)
from mbpo_cli.cli.compare_tables import compare_tables
from mbpo_cli.config.errors import ConfigError
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.process import StopSignals
from mbpo_cli.runs.registry import URL_ENV_VAR, Registry, RegistryError
from mbpo_cli.sweeps import ablation, executors, variants

if TYPE_CHECKING:  # the reports (scipy) load only when an ablation ends: every command starts faster
    from mbpo_cli.reports import compare as reports

EXIT_EXECUTOR_LOST = 69
"""Exit status when the executor was lost mid-ablation (a Ray cluster whose head stopped answering): EX_UNAVAILABLE
of sysexits.h, a service the command needs is gone; the runs continue with ``--resume`` once it is back."""


def _same_as_control_notes(plan: variants.Plan) -> list[str]:
    return [f"variant {name} trains exactly as the control does (a constant rollout schedule is the same "
            "whatever its epochs): seed for seed on one device its runs repeat the control's numbers"
            for name in plan.same_as_control()]


def _note(text: str) -> None:
    common.out.print(f"note: {text}", highlight=False, markup=False)


def _new_plan(preset: str | None, config: Path | None, env: str | None, sets: list[str] | None, steps: int | None,
              device: str | None, algo: str | None, flags: variants.VariantFlags, seeds: int, start_seed: int,
              name: str | None) -> variants.Plan:
    """The validated plan of a new ablation (nothing written)."""
    if seeds < 1:
        raise ConfigError(f"--seeds: must be at least 1, got {seeds}")
    if start_seed < 0:
        raise ConfigError(f"--start-seed: must be >= 0, got {start_seed}")
    control = build_train_config(preset, config, env, sets, steps=steps, device=device, algo=algo).config
    source = {"preset": preset, "config": None if config is None else str(config.resolve()), "env": env,
              "sets": list(sets or []), "steps": steps, "device": device}
    if algo is not None:
        source["algo"] = algo
    return variants.build_plan(control, source, flags, range(start_seed, start_seed + seeds), name)


@dataclass(frozen=True)
class Placement:
    """Where the runs execute: this machine's processes, or Ray tasks with the resources each requests."""

    executor: str
    jobs: int | None
    """Runs at a time; None: as many as the Ray cluster has resources for."""
    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0

    @property
    def threads(self) -> int:
        """Torch threads of each run whose config leaves train.threads unset: its share of this machine's cores,
        or the whole CPUs Ray gives it."""
        if self.executor == "ray":
            return max(1, int(self.cpus_per_run))
        return ablation.threads_per_job(self.jobs or 1)

    def threads_reason(self) -> str:
        """Where :attr:`threads` comes from, in words."""
        if self.executor == "ray":
            return f"the whole part of --cpus-per-run {self.cpus_per_run:g}"
        return f"{os.cpu_count() or 1} cores // --jobs {self.jobs or 1}"

    def describe(self, own_threads: int | None) -> str:
        """One line for the dry run (``own_threads``: the control's train.threads, when the user set it)."""
        count = self.threads if own_threads is None else own_threads
        threads = f"{count} thread{'s' if count > 1 else ''} each{' (train.threads)' if own_threads else ''}"
        if self.executor == "local":
            return f"--jobs {self.jobs} with {threads}"
        where = "a local Ray instance" if self.address is None else f"the Ray cluster at {self.address}"
        jobs = "as many at a time as it has resources for" if self.jobs is None else f"at most {self.jobs} at a time"
        gpus = f" and {self.gpus_per_run:g} GPU" if self.gpus_per_run else ""
        return f"Ray tasks on {where}, {self.cpus_per_run:g} CPU{gpus} per run, {jobs}, {threads}"

    def options(self) -> list[str]:
        """The command-line options that give this placement again (the defaults left out)."""
        if self.executor == "local":
            return [] if self.jobs in (None, 1) else ["--jobs", str(self.jobs)]
        given = [("--address", self.address), ("--jobs", self.jobs),
                 ("--cpus-per-run", None if self.cpus_per_run == 1.0 else f"{self.cpus_per_run:g}"),
                 ("--gpus-per-run", None if self.gpus_per_run == 0.0 else f"{self.gpus_per_run:g}")]
        return ["--executor", "ray", *(a for flag, value in given if value is not None for a in (flag, str(value)))]


def _placement(executor: str, jobs: int | None, address: str | None, cpus_per_run: float | None,
               gpus_per_run: float | None) -> Placement:
    """The validated placement options."""
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor: expected local or ray, got {executor!r}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs: must be at least 1, got {jobs}")
    if executor == "local":
        given = [f for f, v in (("--address", address), ("--cpus-per-run", cpus_per_run),
                                ("--gpus-per-run", gpus_per_run)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} go with --executor ray")
        return Placement("local", jobs or 1)
    cpus = 1.0 if cpus_per_run is None else cpus_per_run
    gpus = 0.0 if gpus_per_run is None else gpus_per_run
    if cpus <= 0:
        raise ConfigError(f"--cpus-per-run: must be > 0, got {cpus:g}")
    if gpus < 0:
        raise ConfigError(f"--gpus-per-run: must be >= 0, got {gpus:g}")
    try:  # before anything is written
        executors.require_ray()
        if address is not None:
            executors.check_reachable(address)
    except (ImportError, ConnectionError) as error:
        raise ConfigError(str(error)) from None
    return Placement("ray", jobs, address, cpus, gpus)


def _print_plan(plan: variants.Plan, placement: Placement, as_json: bool) -> None:
    """The dry run's output: the plan, its config differences and its size."""
    if as_json:
        data = plan.to_dict()
        data["diffs"] = {k: {key: list(v) for key, v in d.items()} for k, d in plan.diffs().items()}
        data["same_as_control"] = plan.same_as_control()
        emit_json(data)
        return
    common.out.print(f"Ablation plan {plan.group} (dry run: nothing is run or written)")
    common.out.print(diff_table(plan))
    runs = len(plan.variants) * len(plan.seeds)
    common.out.print(f"{len(plan.variants)} variants x {len(plan.seeds)} seeds ({', '.join(map(str, plan.seeds))}) = "
                     f"{runs} runs, {plan.total_env_steps():,} env steps in total; "
                     f"{placement.describe(ablation.own_threads(plan, variants.CONTROL))}",
                     highlight=False)
    for note in _same_as_control_notes(plan):
        _note(note)


def _create_group(ctx: typer.Context, plan: variants.Plan) -> Registry:
    """The registry with the new ablation group in it (an existing group of that name is an error)."""
    existing = existing_registry(ctx)
    if existing is not None and existing.group_info(plan.group) is not None:
        raise RegistryError(f"group {plan.group!r} already exists; continue it with: mbpo ablate --resume "
                            f"{plan.group}, or choose another --name")
    registry = open_registry(ctx)
    ablation.create_group(registry, plan)
    return registry


def _executor(placement: Placement) -> executors.Executor:
    """The executor of the placement (Ray is imported, and started or joined, only when asked for)."""
    if placement.executor == "local":
        return executors.LocalProcessExecutor()
    env = {URL_ENV_VAR: os.environ[URL_ENV_VAR]} if os.environ.get(URL_ENV_VAR) else {}
    try:
        return executors.RayExecutor(placement.address, placement.cpus_per_run, placement.gpus_per_run, env)
    except (ConnectionError, RuntimeError) as error:
        raise RunError(f"cannot start or reach Ray ({placement.address or 'local'}): "
                       f"{' '.join(str(error).split())}") from None


def _say(text: str) -> None:
    """One line on stderr."""
    common.err.print(text, highlight=False, markup=False, soft_wrap=True)


def _execute(plan: variants.Plan, registry: Registry, runs_dir: Path, placement: Placement,
             as_json: bool, pack: int = 1) -> tuple[list[ablation.Task], ablation.Ending]:
    """Run the plan's unfinished runs (a live table unless --json); the tasks and how the execution ended."""
    ablation.write_variant_configs(plan, runs_dir)
    tasks = ablation.plan_tasks(plan, registry, runs_dir)
    if ablation.threads_chosen_for(plan, tasks):
        count = placement.threads
        _say(f"note: ablate gives each new run {count} torch thread{'s' if count > 1 else ''} "
             f"({placement.threads_reason()}); --set train.threads=N chooses")
    executor = _executor(placement)
    try:
        with StopSignals() as stop:
            def run(tick: Callable[[list[ablation.Task]], None] | None) -> ablation.Ending:
                return ablation.execute(plan, tasks, registry, runs_dir, executor, placement.jobs, placement.threads,
                                        on_tick=tick, stop=stop, pack=pack)

            if as_json:
                with redirect_stdout(sys.stderr):  # Ray prints its workers' failures to stdout: keep it JSON only
                    return tasks, run(None)
            table = ablation_runs_table(plan, ablation.run_rows(plan, tasks, registry))
            with Live(table, console=common.out, refresh_per_second=2) as live:
                ending = run(lambda current: live.update(
                    ablation_runs_table(plan, ablation.run_rows(plan, current, registry))))
            common.out.print()
        return tasks, ending
    finally:
        if isinstance(executor, executors.RayExecutor):
            executor.close()


def _ablation_report(registry: Registry, plan: variants.Plan) -> tuple[reports.Report | None, list[str]]:
    """The compare report of the group with the control as baseline (None and a note when not possible)."""
    from mbpo_cli.reports import compare as reports

    runs = registry.runs_in_group(plan.group)
    control = [r for r in runs if r.variant == variants.CONTROL]
    try:
        curves = reports.load_curves(registry, runs)
        usable = [r for r in control if len(curves[r.id][0]) > 0]
        return reports.build_report(runs, curves, baseline_runs=usable or None), []
    except reports.ReportError as error:
        return None, [f"no compare report: {error}"]


def _report(plan: variants.Plan, tasks: list[ablation.Task], registry: Registry, ending: ablation.Ending,
            as_json: bool) -> list[dict[str, Any]]:
    """Print the end report (compare tables, config differences, notes, or one JSON object); the run rows."""
    from mbpo_cli.reports import compare as reports

    rows = ablation.run_rows(plan, tasks, registry)
    stopped = ending.signum is not None or ending.lost is not None
    report, notes = (None, []) if stopped else _ablation_report(registry, plan)
    notes += _same_as_control_notes(plan)
    if as_json:
        keys = ("id", "variant", "seed", "status", "env_steps", "last_eval_return")
        emit_json({"group": plan.group, "interrupted": ending.signum is not None, "executor_lost": ending.lost,
                   "runs": [{k: r[k] for k in keys} for r in rows],
                   "variants": [{"name": v.name, "overrides": list(v.overrides)} for v in plan.variants],
                   "compare": None if report is None else reports.report_to_dict(report), "notes": notes})
        return rows
    if report is not None:
        for table in compare_tables(report, common.out.width):
            common.out.print(table)
        for note in report.notes:
            _note(note)
    common.out.print(diff_table(plan))
    for note in notes:
        _note(note)
    return rows


def resume_command(runs_dir: Path, group: str, placement: Placement) -> str:
    """The command that continues the ablation where it runs now (the same runs directory and executor options)."""
    return shlex.join(["mbpo", "--runs-dir", str(runs_dir), "ablate", "--resume", group, *placement.options()])


def _lost_line(rows: list[dict[str, Any]], lost: str, placement: Placement, resume: str) -> str:
    """What a lost executor means for the runs, and how to continue, in one line."""
    running = sum(1 for r in rows if r["state"] == ablation.TaskState.LOST)
    waiting = sum(1 for r in rows if r["state"] == ablation.TaskState.PENDING)
    when = "" if placement.address is None else "once the cluster answers again, "
    return (f"error: {lost}; {running} run{'s were' if running != 1 else ' was'} running and {waiting} not started "
            f"(--resume continues each from its last checkpoint); {when}continue with: {resume}")


def _exit_status(plan: variants.Plan, rows: list[dict[str, Any]], runs_dir: Path, placement: Placement,
                 ending: ablation.Ending) -> None:
    """Say which runs need attention and how to continue; exit 128 + signal when stopped, EXIT_EXECUTOR_LOST when
    the executor was lost, 1 when runs remain."""
    failed = [r for r in rows if r["state"] == ablation.TaskState.FAILED]
    busy = [r for r in rows if r["state"] == ablation.TaskState.BUSY]
    resume = resume_command(runs_dir, plan.group, placement)
    for r in failed:
        _say(f"run {r['id'] or '-'} ({r['variant']}, seed {r['seed']}) failed; its log is under "
             f"{ablation.ablation_dir(runs_dir, plan.group) / 'logs'}")
    for r in busy:
        _say(f"run {r['id']} ({r['variant']}, seed {r['seed']}) is running in another process: not started")
    if ending.lost is not None:
        _say(_lost_line(rows, ending.lost, placement, resume))
        raise typer.Exit(EXIT_EXECUTOR_LOST)
    if ending.signum is not None:
        _say(f"interrupted: continue with: {resume}")
        raise typer.Exit(128 + ending.signum)
    if failed or busy:
        _say(f"continue the unfinished runs with: {resume}")
        raise typer.Exit(1)


def ablate(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="Variant: the agent on real data with the same "
                                          "G.")] = False,
    rollout_length: Annotated[list[int] | None, typer.Option("--rollout-length", help="Variant: fixed rollout "
                                                              "length K (repeatable).")] = None,
    from_initial_states: Annotated[bool, typer.Option("--from-initial-states", help="Variant: branch from reset "
                                                      "states.")] = False,
    real_ratio: Annotated[list[float] | None, typer.Option("--real-ratio", help="Variant: real-data fraction R "
                                                           "in [0, 1] (repeatable).")] = None,
    ensemble_size: Annotated[list[int] | None, typer.Option("--ensemble-size", help="Variant: N members, elites "
                                                            "min(elites, N) (repeatable; 1 = single model).")]
    = None,
    deterministic_model: Annotated[bool, typer.Option("--deterministic-model", help="Variant: deterministic "
                                                      "model.")] = False,
    no_elites: Annotated[bool, typer.Option("--no-elites", help="Variant: roll out with every member.")] = False,
    adaptive_horizon: Annotated[bool, typer.Option("--adaptive-horizon", help="Variant: branch lengths set by "
                                                   "the model's uncertainty (rollout.adaptive).")] = False,
    updates_per_step: Annotated[list[int] | None, typer.Option("--updates-per-step", help="Variant: G "
                                                               "(repeatable).")] = None,
    algo: Annotated[str | None, typer.Option("--algo", help="The control's algorithm: mbpo, dhmbpo, model-free "
                                             "or sac (as train --algo).")] = None,
    no_training_rollout: Annotated[bool, typer.Option("--no-training-rollout", help="Variant (--algo dhmbpo): "
                                                      "training horizon 0, DHMBPO's MBPO parent.")] = False,
    no_distribution_rollout: Annotated[bool, typer.Option("--no-distribution-rollout", help="Variant (--algo "
                                                          "dhmbpo): no distribution rollout, SAC-SVG(H).")] = False,
    mbpo: Annotated[bool, typer.Option("--mbpo", help="Variant: MBPO itself with the source's settings (beside "
                                       "--algo dhmbpo).")] = False,
    variant: Annotated[list[str] | None, typer.Option("--variant", help="Custom variant NAME:KEY=VALUE[,KEY=VALUE"
                                                      "...] (repeatable).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per variant.")] = 3,
    pack: Annotated[int, typer.Option("--pack", min=1, help="Train up to this many seeds of a variant in one "
                                      "process (`train --seeds`; one process per run by default: on a CPU two "
                                      "single-thread processes are faster than one pack, see the README).")] = 1,
    start_seed: Annotated[int, typer.Option("--start-seed", help="First seed.")] = 0,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Runs at a time (local: 1, each with cores // jobs "
                                             "threads unless train.threads is set; ray: as many as the cluster's "
                                             "resources allow).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="Where runs execute: local (processes on this "
                                          "machine) or ray (Ray tasks; pip install 'mbpo-cli[ray]').")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray: the cluster to join (auto, HOST:PORT or "
                                                "ray://HOST:PORT); default: a local Ray instance for this "
                                                "command.")] = None,
    cpus_per_run: Annotated[float | None, typer.Option("--cpus-per-run", help="Ray: CPUs each run requests "
                                                        "(default 1; its torch threads: the whole part, unless "
                                                        "train.threads is set).")] = None,
    gpus_per_run: Annotated[float | None, typer.Option("--gpus-per-run", help="Ray: GPUs each run requests "
                                                        "(fractions share a GPU; default 0).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Total real env steps per run.")] = None,
    device: DeviceOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="Group name (default: PRESET-ablation-HASH).")]
    = None,
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; run and write nothing.")] = False,
    resume_group: Annotated[str | None, typer.Option("--resume", help="Continue the unfinished runs of an "
                                                     "ablation group.", metavar="GROUP")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the MBPO paper's ablations: the full configuration ("control") and one variant per flag, across seeds
    (no variant flag: the control alone, a seed sweep).

    Every variant x seed is a run in one registry group (kind ablation); runs execute as separate
    `mbpo train` processes, --jobs at a time. Ctrl-C interrupts them all (each checkpoints); continue with
    `mbpo ablate --resume GROUP` (the hint repeats the executor options). At the end: the compare report with the
    control as the baseline. Exit status: 0 all finished, 1 runs failed, 2 bad input, 130/143 Ctrl-C/SIGTERM,
    69 the Ray cluster was lost (its head stopped answering; --resume once it is back).

    Examples:

        mbpo ablate --preset hopper --no-model --rollout-length 5 --seeds 3 --jobs 3

        mbpo ablate --preset hopper --real-ratio 0.5 --variant wide:model.hidden=400,sac.hidden=512 --dry-run

        mbpo ablate --resume hopper-ablation-3f9a1c

        mbpo ablate --preset hopper --no-model --seeds 8 --executor ray --address auto --gpus-per-run 0.25

        mbpo ablate --preset hopper --seeds 10 --executor ray      # a seed sweep on a local Ray instance

        mbpo ablate --preset inverted_pendulum --no-model --seeds 4 --pack 4   # each variant's seeds in one process

        mbpo ablate --preset hopper --algo dhmbpo --no-training-rollout --no-distribution-rollout --mbpo --seeds 2
    """
    with handled(ctx):
        flags = variants.VariantFlags(
            no_model=no_model, rollout_lengths=rollout_length or (), from_initial_states=from_initial_states,
            real_ratios=real_ratio or (), ensemble_sizes=ensemble_size or (), deterministic_model=deterministic_model,
            no_elites=no_elites, adaptive_horizon=adaptive_horizon, updates_per_step=updates_per_step or (),
            no_training_rollout=no_training_rollout, no_distribution_rollout=no_distribution_rollout, mbpo=mbpo,
            custom=variant or ())
        placement = _placement(executor, jobs, address, cpus_per_run, gpus_per_run)
        if resume_group is not None:
            given = [preset, config, env, steps, device, algo, name, set_, dry_run] + [f for f in vars(flags).values()
                                                                                     if f]
            if any(x is not None and x is not False for x in given):
                raise ConfigError("--resume GROUP takes the plan from the group: only --jobs, --json and the "
                                  "executor options go with it (no --dry-run)")
            registry = registry_of(ctx, resume_group)
            plan = ablation.load_plan(registry, resume_group)
        else:
            plan = _new_plan(preset, config, env, set_, steps, device, algo, flags, seeds, start_seed, name)
            note_renamed(name, "group name")
            if dry_run:
                _print_plan(plan, placement, as_json)
                return
            registry = _create_group(ctx, plan)
        tasks, ending = _execute(plan, registry, ctx.obj.runs_dir, placement, as_json, pack)
        rows = _report(plan, tasks, registry, ending, as_json)
        _exit_status(plan, rows, ctx.obj.runs_dir, placement, ending)

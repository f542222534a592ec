"""`mbpo tune`: hyperparameter search with Optuna, each trial a run in the registry.

The command composes the study's definition and its execution (`mbpo_cli.sweeps.tune`, on an
ablation's executors and placement options, `mbpo_cli.cli.ablate`), the live table of its trials and the best
trial's config as the YAML `mbpo train --config` takes.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from mbpo_cli.cli import ablate, common
from mbpo_cli.cli.common import (
    ConfigOpt,
    DeviceOpt,
    EnvOpt,
    JsonOpt,
    OverwriteOpt,
    PresetOpt,
    SetOpt,
    build_train_config,
    emit_json,
    existing_registry,
    handled,
    note_renamed,
    open_registry,
    write_result,
)
from mbpo_cli.cli.fit import Col, Fit, compact, fitted, fmt_number
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.errors import ConfigError
from mbpo_cli.runs.outputs import OutputFile, check_file
from mbpo_cli.runs.process import StopSignals
from mbpo_cli.runs.registry import Registry, RegistryError
from mbpo_cli.sweeps import executors
from mbpo_cli.sweeps.ablation import Ending
from mbpo_cli.sweeps.tune.best import Best, best_config_yaml, best_trial
from mbpo_cli.sweeps.tune.execution import Tuner, execute, full, leaves_threads
from mbpo_cli.sweeps.tune.layout import study_lock
from mbpo_cli.sweeps.tune.planning import plan_tasks
from mbpo_cli.sweeps.tune.space import describe_value, describe_values
from mbpo_cli.sweeps.tune.spec import StudySpec, build_spec
from mbpo_cli.sweeps.tune.storage import create_study, load_spec, open_study, require_optuna, save_spec, trials_asked
from mbpo_cli.sweeps.tune.study_file import read_study_file
from mbpo_cli.sweeps.tune.trials import TrialState, TrialTask


def _say(text: str) -> None:
    """One line on stderr."""
    common.err.print(text, highlight=False, markup=False, soft_wrap=True)


def _require_optuna() -> None:
    """ConfigError (exit 2) naming the extra when Optuna is not installed."""
    try:
        require_optuna()
    except ImportError as error:
        raise ConfigError(str(error)) from None


def _new_spec(path: Path, preset: str | None, config: Path | None, env: str | None, sets: list[str] | None,
              steps: int | None, device: str | None, trials: int | None, name: str | None) -> StudySpec:
    """The validated definition of a new study (nothing written): the study file, its fixed part from the file's
    ``base:`` or from --preset/--config/--env, and --set/--steps/--device."""
    study = read_study_file(path)
    file_preset, file_config = study.base_source()
    given = [flag for flag, value in (("--preset", preset), ("--config", config), ("--env", env)) if value is not None]
    if study.base is not None and given:
        raise ConfigError(f"{path}: base: {study.base} and {given[0]}: name the fixed part once")
    if study.base is None and not given:
        raise ConfigError(f"{path}: no base: name the fixed part with base: PRESET (or a config file) in the study "
                          "file, or with --preset, --config or --env")
    preset, config = preset or file_preset, config or file_config
    resolved = build_train_config(preset, config, env, sets, steps=steps, device=device)
    fixed, recorded = resolved.config, resolved.preset
    source = {"study": str(path.resolve()), "preset": preset,
              "config": None if config is None else str(config.resolve()), "env": env, "sets": list(sets or []),
              "steps": steps, "device": device}
    return build_spec(study, fixed, recorded, source, trials, name)


def _create(ctx: typer.Context, spec: StudySpec) -> Registry:
    """The registry with the new study in it (an existing group of that name is an error)."""
    existing = existing_registry(ctx)
    if existing is not None and existing.group_info(spec.name) is not None:
        raise RegistryError(f"group {spec.name!r} already exists; continue the study with: mbpo tune --resume "
                            f"{spec.name}, or choose another --name")
    registry = open_registry(ctx)
    create_study(registry, spec)
    return registry


def _resumed(ctx: typer.Context, name: str, trials: int | None) -> tuple[Registry, StudySpec]:
    """The registry and definition of an existing study (asking for ``trials`` in all, when given)."""
    registry = existing_registry(ctx)
    if registry is None:
        raise RegistryError(f"no study {name!r}: there is no registry at {ctx.obj.runs_dir / 'registry.db'}")
    spec = load_spec(registry, name)
    if trials is not None and trials != spec.trials:
        asked = trials_asked(registry, name)
        if trials < asked:
            raise ConfigError(f"--trials {trials}: study {name} already has {asked} trials")
        spec = spec.with_trials(trials)
        save_spec(registry, spec)
    return registry, spec


# ---------------------------------------------------------------------------------------------
# The table and the result
# ---------------------------------------------------------------------------------------------


def _steps(task: TrialTask) -> str:
    """``405/1,000``, or ``1,000`` once the run has all its steps."""
    done = f"{task.env_steps:,}"
    return done if task.env_steps >= task.target_steps else f"{done}/{task.target_steps:,}"


def trials_table(spec: StudySpec, tasks: list[TrialTask], width: int) -> Table:
    """One row per trial: its number (* the best), its value of each key of the space, its run, steps, the metric's
    last value (and the objective, when it averages several) and its state, fitted to a terminal ``width`` columns
    wide; the title counts the trials and names the best."""
    counts = {s: sum(1 for t in tasks if t.state is s) for s in TrialState}
    ended = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] + counts[TrialState.FAILED]
    best = best_trial(spec, tasks)
    best_text = "" if best is None else (f"; best {spec.objective.describe()} {fmt_number(best.value, ',.2f')} "
                                         f"(trial {best.number})")
    table = compact(title=f"Study {escape(spec.name)}: {ended}/{spec.trials} trials done "
                          f"({counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} "
                          f"pruned, {counts[TrialState.FAILED]} failed){best_text}")
    averaged = spec.objective.last > 1
    last = "last eval" if spec.objective.metric == metric_keys.EVAL_RETURN else f"last {spec.objective.metric}"
    columns = [Col("trial"), *(Col(p.key, Fit.NAME, keep=10) for p in spec.space), Col("run"), Col("env steps"),
               Col(last), *([Col("objective")] if averaged else []), Col("state", Fit.WRAP)]
    rows = []
    for task in tasks:
        mark = "*" if best is not None and task.number == best.number else ""
        values = [describe_value(task.values[p.key]) if p.key in task.values else "-" for p in spec.space]
        ending = " (earlier)" if task.earlier else ""
        rows.append([f"{task.number}{mark}", *values, task.run_id or "-", _steps(task),
                     fmt_number(task.last_metric, ",.2f"), *([fmt_number(task.value, ",.2f")] if averaged else []),
                     f"{task.state.value}{ending}"])
    return fitted(table, columns, rows, width)


def best_yaml(spec: StudySpec, best: Best, complete: bool) -> str:
    """The best trial's config as YAML for `mbpo train --config`, after comment lines saying which trial it is."""
    which = "best" if complete else "best so far"
    header = (f"# {which} of study {spec.name}: trial {best.number}, {spec.objective.describe()} "
              f"{best.value:.6g} ({describe_values(best.values)})\n"
              f"# train it with: mbpo train --config FILE\n")
    data = best_config_yaml(best.config, spec.preset)
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _rows(tasks: list[TrialTask]) -> list[dict[str, Any]]:
    return [{"number": t.number, "state": t.state.value, "earlier": t.earlier, "params": t.values, "run_id": t.run_id,
             "env_steps": t.env_steps, "last_metric": t.last_metric, "value": t.value, "error": t.error}
            for t in tasks]


def _report(spec: StudySpec, tasks: list[TrialTask], registry: Registry, ending: Ending,
            output: OutputFile | None, as_json: bool) -> Best | None:
    """Print the end report (the table and the best config's YAML, or one JSON object) and write --out; the best
    trial."""
    best = best_trial(spec, tasks)
    complete = ending.signum is None and ending.lost is None and not _unfinished(tasks)
    text = None if best is None else best_yaml(spec, best, complete)
    if output is not None and text is not None:
        with output.writing() as partial:
            partial.write_text(text)
    if as_json:
        emit_json({
            "study": spec.name, "storage": registry.where, "metric": spec.objective.metric,
            "last": spec.objective.last, "direction": spec.objective.direction.value, "trials_planned": spec.trials,
            "interrupted": ending.signum is not None, "executor_lost": ending.lost, "trials": _rows(tasks),
            "best": None if best is None else {
                "number": best.number, "value": best.value, "params": best.values, "run_id": best.run_id,
                "config": best_config_yaml(best.config, spec.preset)},
            "out": None if output is None or text is None else str(output.named)})
        return best
    if text is not None:
        write_result(text)
    if output is not None and text is not None:
        _say(f"wrote the best config to {output.named}")
    return best


def _unfinished(tasks: list[TrialTask]) -> list[TrialTask]:
    return [t for t in tasks if t.state in (TrialState.INTERRUPTED, TrialState.BUSY,
                                            TrialState.LOST, TrialState.PENDING)]


def resume_command(runs_dir: Path, study: str, placement: ablate.Placement) -> str:
    """The command that continues the study where it runs now (the same runs directory and executor options)."""
    return shlex.join(["mbpo", "--runs-dir", str(runs_dir), "tune", "--resume", study, *placement.options()])


def _exit_status(spec: StudySpec, tasks: list[TrialTask], best: Best | None, runs_dir: Path,
                 placement: ablate.Placement, ending: Ending) -> None:
    """Say which trials need attention and how to continue; exit 69 when the executor was lost, 128 + signal when
    stopped, 1 when trials remain unfinished or none completed."""
    resume = resume_command(runs_dir, spec.name, placement)
    for task in tasks:
        if task.state is TrialState.FAILED and not task.earlier:
            _say(f"trial {task.number} failed: {task.error}")
        if task.state is TrialState.BUSY:
            _say(f"trial {task.number}: its run {task.run_id} is training in another process: not started")
    if ending.lost is not None:
        _say(f"error: {ending.lost}; continue the study with: {resume}")
        raise typer.Exit(ablate.EXIT_EXECUTOR_LOST)
    if ending.signum is not None:
        _say(f"interrupted: continue with: {resume}")
        raise typer.Exit(128 + ending.signum)
    if _unfinished(tasks):
        _say(f"trials remain unfinished; continue with: {resume}")
        raise typer.Exit(1)
    if best is None:
        _say(f"error: no trial of study {spec.name} completed (see the trials' states above)")
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------


def _execute(spec: StudySpec, registry: Registry, runs_dir: Path, placement: ablate.Placement,
             as_json: bool) -> tuple[list[TrialTask], Ending]:
    """Run the study's trials under its lock (a live table unless --json); the trials and how it ended."""
    with study_lock(runs_dir, spec.name):
        study = open_study(registry, spec)
        tasks = plan_tasks(study, spec, registry, runs_dir)
        starts = not full(study, spec) or any(t.state is TrialState.PENDING for t in tasks)
        if starts and leaves_threads(spec):
            count = placement.threads
            _say(f"note: tune gives each new run {count} torch thread{'s' if count > 1 else ''} "
                 f"({placement.threads_reason()}); --set train.threads=N chooses")
        executor = ablate._executor(placement)
        try:
            tuner = Tuner(study, spec, registry, runs_dir, executor, placement.threads)
            with StopSignals() as stop:
                def run(tick: Callable[[list[TrialTask]], None] | None) -> Ending:
                    return execute(tuner, tasks, placement.jobs or 1, on_tick=tick, stop=stop)

                if as_json:
                    with redirect_stdout(sys.stderr):  # Ray prints its workers' failures to stdout: keep it JSON
                        return tasks, run(None)
                with Live(trials_table(spec, tasks, common.out.width), console=common.out,
                          refresh_per_second=2) as live:
                    ending = run(lambda current: live.update(trials_table(spec, current, common.out.width)))
                common.out.print()
            return tasks, ending
        finally:
            if isinstance(executor, executors.RayExecutor):
                executor.close()


def tune(
    ctx: typer.Context,
    study_file: Annotated[Path | None, typer.Argument(help="The study: a YAML file with the search space (and "
                                                      "base, metric, last, direction, trials, sampler, pruner).",
                                                      metavar="STUDY.yaml", show_default=False)] = None,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    set_: SetOpt = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Total real env steps of each trial's run.")] = None,
    device: DeviceOpt = None,
    trials: Annotated[int | None, typer.Option("--trials", help="Trials in all (default: the study file's, else 20; "
                                               "with --resume: raise it to continue a study further).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Study name, also its registry group (default: "
                                             "STUDY-tune-HASH).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Trials at a time (default 1; local: each run with "
                                             "cores // jobs threads unless train.threads is set).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="Where runs execute: local (processes on this "
                                          "machine) or ray (Ray tasks; pip install 'mbpo-cli[ray]').")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray: the cluster to join (auto, HOST:PORT or "
                                                "ray://HOST:PORT); default: a local Ray instance.")] = None,
    cpus_per_run: Annotated[float | None, typer.Option("--cpus-per-run", help="Ray: CPUs each run requests "
                                                        "(default 1).")] = None,
    gpus_per_run: Annotated[float | None, typer.Option("--gpus-per-run", help="Ray: GPUs each run requests "
                                                        "(default 0).")] = None,
    resume_study: Annotated[str | None, typer.Option("--resume", help="Continue a study: its unfinished trials' "
                                                     "runs resume, then new trials until it has all of them.",
                                                     metavar="STUDY")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the best config's YAML to this file.")]
    = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Search hyperparameters with Optuna (pip install 'mbpo-cli[tune]'): each trial is a run in the registry, in one
    group per study, and the study's Optuna tables live in the registry's database.

    A trial's run reports each evaluation to the pruner (median by default), which stops hopeless trials early (the
    run checkpoints and ends interrupted; the trial is pruned). Ctrl-C stops the running trials the same way;
    `mbpo tune --resume STUDY` continues them. At the end: the best config as YAML for `mbpo train --config` (and
    in --out FILE). Exit status: 0 done, 1 trials unfinished or none completed, 2 bad input, 130/143 Ctrl-C/SIGTERM,
    69 the Ray cluster was lost.

    Examples:

        mbpo tune study.yaml --trials 30 --jobs 2 --out best.yaml

        mbpo tune study.yaml --preset hopper --set train.steps=50000

        mbpo tune --resume study-tune-3f9a1c

        mbpo tune study.yaml --executor ray --address auto --jobs 8
    """
    with handled(ctx):
        _require_optuna()
        placement = ablate._placement(executor, jobs, address, cpus_per_run, gpus_per_run)
        output = None if out is None else check_file("--out", out, ctx.obj.runs_dir, overwrite)
        if resume_study is not None:
            given = [study_file, preset, config, env, set_, steps, device, name]
            if any(x is not None for x in given):
                raise ConfigError("--resume STUDY takes the study from the registry: only --trials, --jobs, --out, "
                                  "--json and the executor options go with it")
            registry, spec = _resumed(ctx, resume_study, trials)
        else:
            if study_file is None:
                raise ConfigError("give a study file (mbpo tune STUDY.yaml) or --resume STUDY")
            spec = _new_spec(study_file, preset, config, env, set_, steps, device, trials, name)
            note_renamed(name, "study name")
            registry = _create(ctx, spec)
        tasks, ending = _execute(spec, registry, ctx.obj.runs_dir, placement, as_json)
        best = _report(spec, tasks, registry, ending, output, as_json)
        _exit_status(spec, tasks, best, ctx.obj.runs_dir, placement, ending)

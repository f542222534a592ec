"""The trials a session runs: a new trial asked of the sampler (its values suggested, its config file written), and
on ``--resume`` every trial so far, the unfinished ones matched with their runs."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mbpo_cli.config.load import ConfigError
from mbpo_cli.runs.layout import run_dir
from mbpo_cli.runs.process import is_locked
from mbpo_cli.runs.registry import Registry, RunInfo
from mbpo_cli.runs.resume import has_full_checkpoint
from mbpo_cli.runs.start import discard_run, run_named
from mbpo_cli.sweeps.tune.following import complete
from mbpo_cli.sweeps.tune.layout import run_name, write_trial_config
from mbpo_cli.sweeps.tune.space import Param, ParamType
from mbpo_cli.sweeps.tune.spec import StudySpec
from mbpo_cli.sweeps.tune.storage import require_optuna
from mbpo_cli.sweeps.tune.trials import Action, TrialState, TrialTask, fail, take_run

if TYPE_CHECKING:
    import optuna


def suggest(trial: optuna.Trial, param: Param) -> Any:
    """The trial's value of ``param``, asked of Optuna."""
    if param.type is ParamType.FLOAT:
        return trial.suggest_float(param.key, float(param.low or 0), float(param.high or 0), log=param.log,
                                   step=param.step)
    if param.type is ParamType.INT:
        return trial.suggest_int(param.key, int(param.low or 0), int(param.high or 0), log=param.log,
                                 step=int(param.step or 1))
    return param.decode(trial.suggest_categorical(param.key, param.optuna_choices()))


def ask(study: optuna.Study, spec: StudySpec, runs_dir: Path) -> TrialTask:
    """A new trial: its values asked of the sampler and its config file written, or FAILED (told so) when the config
    refuses the combination."""
    trial = study.ask()
    values = {p.key: suggest(trial, p) for p in spec.space}
    task = TrialTask(trial.number, values, int(spec.base["train"]["steps"]), trial=trial)
    try:
        config = spec.trial_config(values)
    except ConfigError as error:
        fail(study, task, str(error))
        return task
    task.target_steps = config.train.steps
    write_trial_config(spec, runs_dir, task.number, config)
    return task


def _ended(optuna: ModuleType) -> dict[Any, TrialState]:
    """Optuna's finished trial states -> the task's."""
    states = optuna.trial.TrialState
    return {states.COMPLETE: TrialState.COMPLETE, states.PRUNED: TrialState.PRUNED, states.FAIL: TrialState.FAILED}


def plan_tasks(study: optuna.Study, spec: StudySpec, registry: Registry, runs_dir: Path) -> list[TrialTask]:
    """Every trial of the study so far: ended ones as they ended, unfinished ones (a stopped session's) matched with
    their runs: a finished run's trial is told its value now, a run with a checkpoint resumes, a run training in
    another process is left to it, and a trial whose run has nothing to resume from is trained again."""
    optuna = require_optuna()
    ended = _ended(optuna)
    tasks = []
    for frozen in study.get_trials(deepcopy=False):
        values = {p.key: p.decode(frozen.params[p.key]) for p in spec.space if p.key in frozen.params}
        task = TrialTask(frozen.number, values, int(spec.base["train"]["steps"]), value=frozen.value,
                         error=frozen.user_attrs.get("error"))
        run = run_named(registry, run_name(spec.name, frozen.number))
        if run is not None:
            take_run(task, run, registry, spec)
        if frozen.state in ended:
            task.state, task.earlier = ended[frozen.state], True
            task.value = frozen.value if task.state is TrialState.COMPLETE else task.value
        elif frozen.state == optuna.trial.TrialState.RUNNING:
            task.trial = optuna.trial.Trial(study, frozen._trial_id)
            task.reported = set(frozen.intermediate_values)
            _plan_unfinished(task, run, study, spec, registry, runs_dir)
        else:
            continue  # a WAITING trial (enqueued by hand): study.ask() gives it out
        tasks.append(task)
    return tasks


def _plan_unfinished(task: TrialTask, run: RunInfo | None, study: optuna.Study, spec: StudySpec, registry: Registry,
                     runs_dir: Path) -> None:
    """Decide how an unfinished trial of a stopped session continues (see :func:`plan_tasks`)."""
    if len(task.values) != len(spec.space):
        fail(study, task, "asked, but stopped before it had all its values")
        return
    if run is not None and run.status == "finished":
        complete(study, spec, registry, task)
        return
    if run is not None and run.status == "running" and is_locked(run_dir(runs_dir, run.id)):
        task.state = TrialState.BUSY
        return
    if run is not None and has_full_checkpoint(registry, run.id):
        task.action = Action.RESUME
        return
    if run is not None:
        discard_run(registry, runs_dir, run)  # nothing to resume from: train it again
        task.run_id = None
    try:
        write_trial_config(spec, runs_dir, task.number, spec.trial_config(task.values))
    except ConfigError as error:
        fail(study, task, str(error))

"""Following a trial's run in the registry: each new evaluation reported to Optuna (the objective so far, at the
run's env step), the trial pruned when the pruner says so, and the end of its run recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mbpo_cli.runs.outage import OUTAGE_EXIT_CODE
from mbpo_cli.runs.registry import Registry, RegistryError
from mbpo_cli.runs.start import run_named
from mbpo_cli.sweeps.executors import Executor
from mbpo_cli.sweeps.tune.layout import run_name
from mbpo_cli.sweeps.tune.spec import StudySpec
from mbpo_cli.sweeps.tune.storage import require_optuna
from mbpo_cli.sweeps.tune.trials import TrialState, TrialTask, fail, take_run

if TYPE_CHECKING:
    import optuna

_INTERRUPTED_CODES = (130, 143, OUTAGE_EXIT_CODE)
"""Exit statuses of a run that stopped with a checkpoint (Ctrl-C, SIGTERM, a registry outage): resumable."""


def follow(study: optuna.Study, spec: StudySpec, task: TrialTask, registry: Registry,
           executor: Executor | None) -> None:
    """Read the trial's run from the registry, report its new evaluations to Optuna, and (with an ``executor``, while
    it runs) prune it when the pruner says so: told PRUNED at once, its run asked to stop."""
    optuna = require_optuna()
    if task.run_id is None:
        found = run_named(registry, run_name(spec.name, task.number))
        if found is None:
            return
        if task.trial is not None:
            task.trial.set_user_attr("run_id", found.id)
        task.run_id = found.id
    try:
        run = registry.get_run(task.run_id)
    except RegistryError:
        return
    rows = take_run(task, run, registry, spec)
    if task.state is TrialState.PRUNING:
        return  # its run is stopping: Optuna takes no report of an ended trial
    assert task.trial is not None
    new = [(step, value) for step, value in spec.objective.running(rows) if step not in task.reported]
    for step, value in new:
        task.trial.report(value, step)
        task.reported.add(step)
    if executor is not None and new and task.state is TrialState.RUNNING and task.trial.should_prune():
        study.tell(task.trial, state=optuna.trial.TrialState.PRUNED)
        task.state = TrialState.PRUNING
        executor.interrupt(task.handle)


def complete(study: optuna.Study, spec: StudySpec, registry: Registry, task: TrialTask) -> None:
    """Tell Optuna the value of a trial whose run finished (FAIL when the run recorded no value of the metric)."""
    follow(study, spec, task, registry, None)
    if task.value is None:
        fail(study, task, f"its run recorded no {spec.objective.metric}")
        return
    assert task.trial is not None
    study.tell(task.trial, task.value)
    task.state = TrialState.COMPLETE


def end(study: optuna.Study, spec: StudySpec, task: TrialTask, code: int, registry: Registry) -> None:
    """Record the end of a trial's run (exit status ``code``)."""
    task.exit_code = code
    if task.state is TrialState.PRUNING:
        task.state = TrialState.PRUNED
    elif code == 0:
        complete(study, spec, registry, task)
    elif code in _INTERRUPTED_CODES:
        task.state = TrialState.INTERRUPTED  # still RUNNING in Optuna: --resume continues its run
    else:
        fail(study, task, f"its run exited with status {code} (log: {task.log})")

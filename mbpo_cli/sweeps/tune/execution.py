"""Running a session's trials: each trial's run as `mbpo` arguments for an ablation's executor, and the loop that
starts trials ``jobs`` at a time, follows them, records their ends and stops on a signal or a lost executor."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mbpo_cli.runs.process import StopSignals
from mbpo_cli.runs.registry import Registry
from mbpo_cli.sweeps.ablation import Ending
from mbpo_cli.sweeps.executors import Executor, ExecutorLost
from mbpo_cli.sweeps.tune.following import end, follow
from mbpo_cli.sweeps.tune.layout import run_name, trial_file, tune_dir, variant_name
from mbpo_cli.sweeps.tune.planning import ask
from mbpo_cli.sweeps.tune.spec import StudySpec
from mbpo_cli.sweeps.tune.trials import Action, TrialState, TrialTask

if TYPE_CHECKING:
    import optuna


def task_argv(task: TrialTask, spec: StudySpec, runs_dir: Path, threads: int) -> list[str]:
    """The `mbpo` arguments of a trial's run (the executor puts the program in front). A new run gets ``threads``
    torch threads unless its config sets ``train.threads``."""
    base = ["--runs-dir", str(runs_dir.absolute())]
    if task.action is Action.RESUME:
        assert task.run_id is not None
        return [*base, "resume", task.run_id, "--json"]
    own = spec.trial_config(task.values).train.threads
    chosen = [] if own is not None else ["--set", f"train.threads={threads}"]
    return [*base, "train", "--config", str(trial_file(runs_dir, spec.name, task.number).absolute()), *chosen,
            "--group", spec.name, "--variant", variant_name(task.number), "--name", run_name(spec.name, task.number),
            "--if-exists", "resume", "--json"]


def full(study: optuna.Study, spec: StudySpec) -> bool:
    """Whether the study has asked for all of its trials."""
    return len(study.get_trials(deepcopy=False)) >= spec.trials


@dataclass
class Tuner:
    """What the trials of one session run with: the study, its registry and runs directory, the executor and the
    torch threads of each new run."""

    study: optuna.Study
    spec: StudySpec
    registry: Registry
    runs_dir: Path
    executor: Executor
    threads: int

    def start(self, task: TrialTask) -> None:
        """Submit the trial's run to the executor."""
        task.log = tune_dir(self.runs_dir, self.spec.name) / "logs" / f"trial-{task.number}.log"
        task.handle = self.executor.submit(task_argv(task, self.spec, self.runs_dir, self.threads), task.log)
        task.state = TrialState.RUNNING

    def fill(self, active: list[TrialTask], queue: list[TrialTask], tasks: list[TrialTask], jobs: int) -> None:
        """Start pending trials, then new ones, until ``jobs`` run or the study has all of its trials."""
        while len(active) < jobs and (queue or not full(self.study, self.spec)):
            task = queue.pop(0) if queue else ask(self.study, self.spec, self.runs_dir)
            if task not in tasks:
                tasks.append(task)
            if task.state is TrialState.PENDING:
                self.start(task)
                active.append(task)

    def collect(self, active: list[TrialTask]) -> None:
        """Take the trials whose runs ended out of ``active`` and record how (ExecutorLost passes through)."""
        for task in list(active):
            code = self.executor.poll(task.handle)
            if code is not None:
                active.remove(task)
                end(self.study, self.spec, task, code, self.registry)

    def follow(self, active: list[TrialTask]) -> None:
        """Report the running trials' new evaluations; prune those the pruner stops."""
        for task in active:
            follow(self.study, self.spec, task, self.registry, self.executor)

    def interrupt(self, active: list[TrialTask], state: TrialState | None = None) -> None:
        """Ask the running trials' runs to stop (each checkpoints), marking them ``state`` when given."""
        for task in active:
            if task.state is TrialState.RUNNING:
                self.executor.interrupt(task.handle)
                task.state = state or task.state


def execute(tuner: Tuner, tasks: list[TrialTask], jobs: int,
            on_tick: Callable[[list[TrialTask]], None] | None = None, poll_seconds: float = 0.25,
            stop: StopSignals | None = None) -> Ending:
    """Run the study's pending trials, then new ones until it has all of its trials, ``jobs`` at a time; new trials
    are appended to ``tasks``. Returns how it ended: the stop signal's number if one arrived, what was lost if the
    executor was.

    The runs are followed about once a second (reports and pruning), when ``on_tick`` is called too (and at the end).
    """
    queue = [t for t in tasks if t.state is TrialState.PENDING]
    active: list[TrialTask] = []
    stopping, lost, followed = False, None, 0.0
    while True:
        if stop is not None and stop.signum is not None and not stopping:
            stopping = True
            tuner.interrupt(active)
        if not stopping:
            tuner.fill(active, queue, tasks, jobs)
        try:
            tuner.collect(active)
        except ExecutorLost as error:
            lost = str(error)
            tuner.interrupt(active, TrialState.LOST)  # a live run checkpoints and stops rather than train unwatched
            break
        if time.monotonic() - followed >= 1.0:
            followed = time.monotonic()
            tuner.follow(active)
            if on_tick is not None:
                on_tick(tasks)
        if not active and (stopping or (not queue and full(tuner.study, tuner.spec))):
            break
        time.sleep(poll_seconds)
    if on_tick is not None:
        on_tick(tasks)
    return Ending(signum=None if stop is None else stop.signum, lost=lost)


def leaves_threads(spec: StudySpec) -> bool:
    """Whether the study's runs get the tuner's thread count: neither the fixed config nor the space sets
    train.threads."""
    return spec.base["train"]["threads"] is None and all(p.key != "train.threads" for p in spec.space)

"""`mbpo ablate`: the MBPO paper's ablations as one command, across seeds, in parallel, resumable.

An ablation is a *plan* (the control config, its variants and the seeds) executed as one registry group
of kind ``ablation``: every variant x seed is one run, recorded with its ``variant`` name. The plan is
stored in the group's ``info`` so that ``mbpo ablate --resume GROUP`` can rebuild it.

The plan and its variants are in `mbpo_cli.sweeps.variants`. Runs execute as separate ``mbpo train`` /
``mbpo resume`` processes through an executor (`mbpo_cli.sweeps.executors`); the scheduling here only speaks
to its protocol.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import ABLATIONS_FOLDER, run_dir
from mbpo_cli.runs.outage import OUTAGE_EXIT_CODE
from mbpo_cli.runs.process import StopSignals, is_locked
from mbpo_cli.runs.registry import Registry, RegistryError, RunInfo, RunStatus, sanitize_name
from mbpo_cli.runs.resume import has_full_checkpoint
from mbpo_cli.runs.start import discard_run
from mbpo_cli.sweeps.executors import Executor, ExecutorLost
from mbpo_cli.sweeps.variants import Plan

GROUP_KIND = "ablation"


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------


def ablation_dir(runs_dir: Path, group: str) -> Path:
    """Where an ablation's variant configs and child logs live (in the runs directory's ablations folder)."""
    return runs_dir / ABLATIONS_FOLDER / group


def variant_file(runs_dir: Path, group: str, variant: str) -> Path:
    """The resolved config file of one variant."""
    return ablation_dir(runs_dir, group) / "configs" / f"{sanitize_name(variant)}.yaml"


def write_variant_configs(plan: Plan, runs_dir: Path) -> None:
    """Write every variant's resolved config as YAML (what its `mbpo train --config` reads).

    A plan made from a preset names it as the file's `base:` (every key is set, so the base changes no
    value; it records the runs' preset in the registry).
    """
    preset = plan.source.get("preset")
    for variant in plan.variants:
        path = variant_file(runs_dir, plan.group, variant.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = ({"base": preset} if preset else {}) | plan.configs[variant.name]
        path.write_text(yaml.safe_dump(data, sort_keys=False))


def create_group(registry: Registry, plan: Plan) -> None:
    """Create the ablation's registry group with the plan in its info; an existing group is an error."""
    if registry.group_info(plan.group) is not None:
        raise RegistryError(f"group {plan.group!r} already exists; continue it with: mbpo ablate --resume "
                            f"{plan.group}, or choose another --name")
    registry.ensure_group(plan.group, GROUP_KIND, {"ablation": plan.to_dict()})


def load_plan(registry: Registry, group: str) -> Plan:
    """The plan of an existing ablation group."""
    found = registry.group_info(group)
    if found is None:
        raise RegistryError(f"no group {group!r} in {registry.where}")
    if found["kind"] != GROUP_KIND or "ablation" not in found["info"]:
        raise RunError(f"group {group!r} is not an ablation (kind {found['kind']!r})")
    return Plan.from_dict(found["info"]["ablation"])


class TaskState(str, Enum):
    """What is happening to one task of the ablation, as this command knows it."""

    PENDING = "pending"
    SKIPPED = "skipped"
    """Finished before this command."""
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    BUSY = "busy"
    """Running in another process: not started."""
    LOST = "lost"
    """Running when the executor was lost (a Ray cluster whose head stopped answering): its fate is unknown."""


_EXIT_STATES = {0: TaskState.FINISHED, 130: TaskState.INTERRUPTED, 143: TaskState.INTERRUPTED,
                OUTAGE_EXIT_CODE: TaskState.INTERRUPTED}
"""A run's exit status -> its task's state (a run stopped by a registry outage checkpointed: resumable)."""


@dataclass
class Task:
    """One variant x seed of the plan and what is happening to it."""

    variant: str
    seed: int
    run_id: str | None = None
    state: TaskState = TaskState.PENDING
    action: str = "train"
    """train (never started) or resume."""
    exit_code: int | None = None
    handle: Any = None
    log: Path | None = None

    @property
    def label(self) -> str:
        """``variant/s<seed>``."""
        return f"{self.variant}/s{self.seed}"


def run_name(group: str, variant: str, seed: int) -> str:
    """The registry name of one run of the ablation."""
    return sanitize_name(f"{group}-{variant}-s{seed}")


def plan_tasks(plan: Plan, registry: Registry, runs_dir: Path) -> list[Task]:
    """The tasks of the plan, matched with the group's runs: finished ones are skipped, others resumed.

    A run stopped before its first full checkpoint has nothing to resume from: it is deleted and trained again.
    """
    existing: dict[tuple[str | None, int], RunInfo] = {}
    for info in registry.runs_in_group(plan.group):
        existing[(info.variant, info.seed)] = info  # the newest wins
    tasks = []
    for variant in plan.variants:
        for seed in plan.seeds:
            task = Task(variant.name, seed)
            run = existing.get((variant.name, seed))
            if run is not None:
                task.run_id = run.id
                if run.status == RunStatus.FINISHED:
                    task.state = TaskState.SKIPPED
                elif run.status == RunStatus.RUNNING and is_locked(run_dir(runs_dir, run.id)):
                    task.state = TaskState.BUSY
                elif not has_full_checkpoint(registry, run.id):
                    discard_run(registry, runs_dir, run)  # nothing to resume from: train it again
                    task.run_id = None
                else:
                    task.action = "resume"
            tasks.append(task)
    return tasks


def task_argv(task: Task, plan: Plan, runs_dir: Path, threads: int) -> list[str]:
    """The `mbpo` arguments of a task (the executor puts the program in front, where the run executes).

    Both forms are safe to run again after a lost worker: `resume` continues from the newest checkpoint, and
    `train --if-exists resume` continues the run it started if it got that far. A new run gets ``threads`` torch
    threads unless its config sets ``train.threads`` (the user's value always wins).
    """
    base = ["--runs-dir", str(runs_dir.absolute())]
    if task.action == "resume":
        assert task.run_id is not None
        return [*base, "resume", task.run_id, "--json"]
    chosen = [] if own_threads(plan, task.variant) is not None else ["--set", f"train.threads={threads}"]
    return [*base, "train", "--config", str(variant_file(runs_dir, plan.group, task.variant).absolute()),
            "--seed", str(task.seed), *chosen, "--group", plan.group, "--variant", task.variant,
            "--name", run_name(plan.group, task.variant, task.seed), "--if-exists", "resume", "--json"]


def own_threads(plan: Plan, variant: str) -> int | None:
    """The variant's own ``train.threads`` (set by the user, for the control or in the variant), or None."""
    value = plan.configs[variant]["train"]["threads"]
    return None if value is None else int(value)


def threads_chosen_for(plan: Plan, tasks: Sequence[Task]) -> list[Task]:
    """The tasks about to start a new run whose config leaves ``train.threads`` to the ablation."""
    return [t for t in tasks if t.state == TaskState.PENDING and t.action == "train"
            and own_threads(plan, t.variant) is None]


def threads_per_job(jobs: int) -> int:
    """CPU threads for each of ``jobs`` concurrent runs on this machine (no oversubscription)."""
    return max(1, (os.cpu_count() or 1) // jobs)


@dataclass(frozen=True)
class Ending:
    """Why :func:`execute` returned before every task was done (neither field set: it ran them all)."""

    signum: int | None = None
    """The stop signal (SIGINT, SIGTERM) that arrived."""
    lost: str | None = None
    """Why the executor was lost (its running tasks are then :attr:`TaskState.LOST`)."""


def execute(plan: Plan, tasks: list[Task], registry: Registry, runs_dir: Path, executor: Executor,
            jobs: int | None, threads: int, on_tick: Callable[[list[Task]], None] | None = None,
            poll_seconds: float = 0.25, stop: StopSignals | None = None) -> Ending:
    """Run the pending tasks, ``jobs`` at a time (None: all at once, the executor queues them), each new run with
    ``threads`` CPU threads unless its config sets them; returns how it ended: the stop signal's number if one
    arrived, what was lost if the executor was.

    ``on_tick`` is called about once a second (and at the end) for the display.
    """
    logs = ablation_dir(runs_dir, plan.group) / "logs"
    queue = [t for t in tasks if t.state == TaskState.PENDING]
    limit = len(queue) if jobs is None else jobs
    active: list[Task] = []
    last_tick = 0.0
    stopping = False
    lost: str | None = None
    while (queue or active) and lost is None:
        if stop is not None and stop.signum is not None and not stopping:
            stopping = True
            for task in active:
                executor.interrupt(task.handle)
        while queue and len(active) < limit and not stopping:
            task = queue.pop(0)
            task.log = logs / f"{sanitize_name(task.variant)}-s{task.seed}.log"
            task.handle = executor.submit(task_argv(task, plan, runs_dir, threads), task.log)
            task.state = TaskState.RUNNING
            active.append(task)
        try:
            _collect(active, plan, registry, executor)
        except ExecutorLost as error:
            lost = str(error)
            for task in active:  # a run still alive checkpoints and stops, rather than train with no one watching
                executor.interrupt(task.handle)
                task.state = TaskState.LOST
            _attach_runs(active, plan, registry)
        if stopping and not active:
            break
        now = time.monotonic()
        if on_tick is not None and now - last_tick >= 1.0:
            last_tick = now
            _attach_runs(active, plan, registry)
            on_tick(tasks)
        if lost is None:
            time.sleep(poll_seconds)
    if on_tick is not None:
        on_tick(tasks)
    return Ending(signum=None if stop is None else stop.signum, lost=lost)


def _collect(active: list[Task], plan: Plan, registry: Registry, executor: Executor) -> None:
    """Take the tasks that ended out of ``active``, with their exit code and state (ExecutorLost passes through)."""
    for task in list(active):
        code = executor.poll(task.handle)
        if code is None:
            continue
        active.remove(task)
        task.exit_code = code
        task.state = _EXIT_STATES.get(code, TaskState.FAILED)
        _attach_run(task, plan, registry)


def _attach_run(task: Task, plan: Plan, registry: Registry) -> None:
    if task.run_id is None:
        with suppress(RegistryError):
            task.run_id = registry.get_run(run_name(plan.group, task.variant, task.seed)).id


def _attach_runs(tasks: Sequence[Task], plan: Plan, registry: Registry) -> None:
    for task in tasks:
        _attach_run(task, plan, registry)


def run_rows(plan: Plan, tasks: Sequence[Task], registry: Registry) -> list[dict[str, Any]]:
    """One row per task: variant, seed, run id, status (the text shown: the task's state, or its run's status as the
    registry holds it), state (what the status says, as a TaskState), steps and last eval return."""
    rows = []
    for task in tasks:
        row: dict[str, Any] = {"variant": task.variant, "seed": task.seed, "id": task.run_id,
                               "status": task.state.value, "state": task.state, "env_steps": 0,
                               "target_steps": plan.configs[task.variant]["train"]["steps"], "last_eval_return": None}
        if task.state == TaskState.RUNNING and task.run_id is None:
            row["status"] = "starting"
        if task.run_id is not None:
            try:
                run = registry.get_run(task.run_id)
            except RegistryError:
                run = None
            if run is not None:
                row["env_steps"] = run.env_steps
                row["target_steps"] = run.target_steps
                if task.state == TaskState.SKIPPED:
                    row["status"], row["state"] = "finished (earlier)", TaskState.FINISHED
                elif task.state not in (TaskState.RUNNING, TaskState.PENDING, TaskState.LOST):
                    shown = run.shown_status
                    row["status"], row["state"] = str(shown), TaskState(shown.status.value)
                evals = registry.metrics(run.id, metric_keys.EVAL_RETURN)
                row["last_eval_return"] = evals[-1][2] if evals else None
        rows.append(row)
    return rows


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
from mbpo_cli.runs.resume import has_full_checkpoint, pack_runs
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
_RUN_STATES = {RunStatus.FINISHED: TaskState.FINISHED, RunStatus.FAILED: TaskState.FAILED,
               RunStatus.INTERRUPTED: TaskState.INTERRUPTED}
"""A run's recorded status -> its task's state (the runs of a pack, which share one exit status)."""


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


Unit = list[Task]
"""Tasks that one process runs: one task, or the seeds of a pack (`mbpo train --seeds`, or the resume of a pack)."""


def pack_units(tasks: Sequence[Task], pack: int, runs_dir: Path, registry: Registry) -> list[Unit]:
    """The pending tasks as the processes that run them: a new run's task joins the previous unit when it is the next
    seed of the same variant and that unit holds fewer than `pack` (1: one process per run); a resumed run's task
    joins the other runs of the pack it was trained in (its `mbpo resume` continues them all)."""
    units: list[Unit] = []
    packs: dict[str, Unit] = {}
    for task in tasks:
        if task.state != TaskState.PENDING:
            continue
        if task.action == "resume":
            assert task.run_id is not None
            members = pack_runs(runs_dir, registry.get_run(task.run_id))
            unit = packs.get(members[0])
            if unit is None:
                unit = packs[members[0]] = []
                units.append(unit)
            unit.append(task)
            continue
        last = units[-1] if units else None
        if (last is not None and len(last) < pack and last[-1].action == "train" and last[-1].variant == task.variant
                and last[-1].seed + 1 == task.seed):
            last.append(task)
        else:
            units.append([task])
    return units


def unit_argv(unit: Unit, plan: Plan, runs_dir: Path, threads: int) -> list[str]:
    """The `mbpo` arguments of a unit (the executor puts the program in front, where it executes): the resume of its
    runs (`mbpo resume` of one continues its whole pack), a new run, or a pack of new runs (`train --seeds`, its runs
    named as `run_name` names them).

    A resume, and a new lone run (`train --if-exists resume` continues the run it started if it got that far), are
    safe to run again after a lost worker. A new run gets ``threads`` torch threads unless its config sets
    ``train.threads`` (the user's value always wins).
    """
    head = unit[0]
    base = ["--runs-dir", str(runs_dir.absolute())]
    if head.action == "resume":
        assert head.run_id is not None
        return [*base, "resume", head.run_id, "--json"]
    chosen = [] if own_threads(plan, head.variant) is not None else ["--set", f"train.threads={threads}"]
    train = [*base, "train", "--config", str(variant_file(runs_dir, plan.group, head.variant).absolute()),
             "--seed", str(head.seed), *chosen, "--group", plan.group, "--variant", head.variant]
    if len(unit) == 1:
        return [*train, "--name", run_name(plan.group, head.variant, head.seed), "--if-exists", "resume", "--json"]
    return [*train, "--seeds", str(len(unit)), "--name", sanitize_name(f"{plan.group}-{head.variant}"), "--json"]


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
            poll_seconds: float = 0.25, stop: StopSignals | None = None, pack: int = 1) -> Ending:
    """Run the pending tasks, ``jobs`` processes at a time (None: all at once, the executor queues them), each
    process a unit of ``pack`` seeds at most (`pack_units`), each new run with ``threads`` CPU threads unless its
    config sets them; returns how it ended: the stop signal's number if one arrived, what was lost if the executor
    was.

    ``on_tick`` is called about once a second (and at the end) for the display.
    """
    logs = ablation_dir(runs_dir, plan.group) / "logs"
    queue = pack_units(tasks, pack, runs_dir, registry)
    limit = len(queue) if jobs is None else jobs
    active: list[Unit] = []
    last_tick = 0.0
    stopping = False
    lost: str | None = None
    while (queue or active) and lost is None:
        if stop is not None and stop.signum is not None and not stopping:
            stopping = True
            for unit in active:
                executor.interrupt(unit[0].handle)
        while queue and len(active) < limit and not stopping:
            unit = queue.pop(0)
            head = unit[0]
            seeds = f"s{head.seed}" if len(unit) == 1 else f"s{head.seed}-{unit[-1].seed}"
            log = logs / f"{sanitize_name(head.variant)}-{seeds}.log"
            handle = executor.submit(unit_argv(unit, plan, runs_dir, threads), log)
            for task in unit:
                task.log, task.handle, task.state = log, handle, TaskState.RUNNING
            active.append(unit)
        try:
            _collect(active, plan, registry, executor)
        except ExecutorLost as error:
            lost = str(error)
            for unit in active:  # a run still alive checkpoints and stops, rather than train with no one watching
                executor.interrupt(unit[0].handle)
                for task in unit:
                    task.state = TaskState.LOST
            _attach_runs([t for unit in active for t in unit], plan, registry)
        if stopping and not active:
            break
        now = time.monotonic()
        if on_tick is not None and now - last_tick >= 1.0:
            last_tick = now
            _attach_runs([t for unit in active for t in unit], plan, registry)
            on_tick(tasks)
        if lost is None:
            time.sleep(poll_seconds)
    if on_tick is not None:
        on_tick(tasks)
    return Ending(signum=None if stop is None else stop.signum, lost=lost)


def _collect(active: list[Unit], plan: Plan, registry: Registry, executor: Executor) -> None:
    """Take the units that ended out of ``active``, each task with its exit code and state (ExecutorLost passes
    through). In a pack one seed may fail while the others finish: a pack's tasks take their run's own status."""
    for unit in list(active):
        code = executor.poll(unit[0].handle)
        if code is None:
            continue
        active.remove(unit)
        for task in unit:
            task.exit_code = code
            task.state = _EXIT_STATES.get(code, TaskState.FAILED)
            _attach_run(task, plan, registry)
            if len(unit) > 1 and task.run_id is not None:
                with suppress(RegistryError, ValueError):
                    task.state = _RUN_STATES.get(registry.get_run(task.run_id).status, task.state)


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


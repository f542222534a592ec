"""One trial as this command knows it (:class:`TrialTask`): its state, how its run starts, and what its run in the
registry says so far; and a trial told failed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mbpo_cli.runs.registry import Registry, RunInfo
from mbpo_cli.sweeps.tune.spec import StudySpec
from mbpo_cli.sweeps.tune.storage import require_optuna

if TYPE_CHECKING:
    import optuna


class TrialState(str, Enum):
    """What is happening to one trial, as this command knows it."""

    PENDING = "pending"
    RUNNING = "running"
    PRUNING = "pruning"
    """Told pruned; its run is checkpointing and stopping."""
    PRUNED = "pruned"
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    """Its run stopped with a checkpoint (Ctrl-C): --resume continues it."""
    BUSY = "busy"
    """Its run is training in another process: not started."""
    LOST = "lost"
    """Running when the executor was lost."""


class Action(str, Enum):
    """How a pending trial's run starts."""

    TRAIN = "train"
    """A new run (`mbpo train --if-exists resume`)."""
    RESUME = "resume"
    """Its run continues from its newest checkpoint (`mbpo resume`)."""


@dataclass
class TrialTask:
    """One trial of the study and what is happening to it."""

    number: int
    values: dict[str, Any]
    """The trial's value of each key of the space."""
    target_steps: int
    state: TrialState = TrialState.PENDING
    earlier: bool = False
    """Ended before this session."""
    trial: optuna.Trial | None = None
    """Optuna's handle (reporting, pruning) of a trial this session runs."""
    action: Action = Action.TRAIN
    run_id: str | None = None
    env_steps: int = 0
    last_metric: float | None = None
    """The metric's newest value in the registry."""
    value: float | None = None
    """The objective: final once complete, so far while running."""
    reported: set[int] = field(default_factory=set)
    """Steps already reported to Optuna."""
    error: str | None = None
    handle: Any = None
    log: Path | None = None
    exit_code: int | None = None


def take_run(task: TrialTask, run: RunInfo, registry: Registry, spec: StudySpec) -> list[tuple[int, float]]:
    """Attach the run to the task (its id, steps and newest metric value); the metric's finite values by step."""
    task.run_id, task.env_steps, task.target_steps = run.id, run.env_steps, run.target_steps
    rows = [(step, value) for step, _, value in registry.metrics(run.id, spec.objective.metric)
            if math.isfinite(value)]
    task.last_metric = rows[-1][1] if rows else None
    running = spec.objective.running(rows)
    task.value = running[-1][1] if running else None
    return rows


def fail(study: optuna.Study, task: TrialTask, error: str) -> None:
    """Tell Optuna the trial failed, with why (its ``error`` user attribute)."""
    optuna = require_optuna()
    assert task.trial is not None
    task.trial.set_user_attr("error", error)
    study.tell(task.trial, state=optuna.trial.TrialState.FAIL)
    task.state, task.error = TrialState.FAILED, error
